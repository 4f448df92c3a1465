"""``clinrelease audit verify OUT --key PUB``, ``audit pae OUT`` and ``audit verify-log LOG``."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from clinrelease.cli.app import audit_app
from clinrelease.cli.common import EXIT_FAILED, JsonOption, emit_json, handles_errors, out_console, styled


@audit_app.command("verify")
@handles_errors
def verify(
    out: Path = typer.Argument(..., help="The release folder."),
    key: Path = typer.Option(..., "--key", help="The signer's Ed25519 public key (signing.pub)."),
    release_id: str | None = typer.Option(
        None, "--release-id", help="The release id the site gave you; a folder from any other release fails."
    ),
    json_out: bool = JsonOption,
) -> None:
    """Check signature, manifests, files, hash chain, Merkle root, records and every recorded figure.

    Exit 0 only when everything holds; 1 names every failure.
    """
    from clinrelease.audit.verify import verify_release

    report = verify_release(out, key, expected_release_id=release_id)
    if json_out:
        emit_json(report.to_dict())
    else:
        for name, passed in report.checks.items():
            out_console.print(styled("ok  ", "green", name) if passed else styled("FAIL", "red", name), highlight=False)
        for failure in report.failures:
            out_console.print(f"  - {failure}", highlight=False, markup=False, soft_wrap=True)
        verdict = "verified" if report.ok else f"NOT verified: {len(report.failures)} failure(s)"
        out_console.print(
            f"release {report.release_id}: {report.files} files, {report.records} records, "
            f"Merkle root {report.merkle_root}: {verdict}",
            highlight=False,
        )
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)


@audit_app.command("pae")
@handles_errors
def pae_bytes(
    out: Path = typer.Argument(..., help="The release folder."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here instead of stdout."),
) -> None:
    """Write the DSSE pre-authentication bytes the signature covers (for `openssl pkeyutl -verify -rawin`)."""
    from clinrelease.audit.dsse import pae
    from clinrelease.audit.verify import read_statement

    _, payload_type, payload = read_statement(out)
    data = pae(payload_type, payload)
    if output is not None:
        output.write_bytes(data)
    else:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()


@audit_app.command("verify-log")
@handles_errors
def verify_log(
    log: Path = typer.Argument(..., help="A hash-chained audit log (.jsonl), e.g. the site's internal log."),
    key: Path | None = typer.Option(None, "--key", help="Ed25519 public key that signed records (reversal events)."),
    json_out: bool = JsonOption,
) -> None:
    """Check a log's hash chain and, with --key, the signatures of its signed records."""
    from clinrelease.audit.chain import check_chain, read_log
    from clinrelease.crypto.keys import load_signing_public
    from clinrelease.errors import InputError

    if not log.is_file():
        raise InputError("audit log not found", log)
    public = load_signing_public(key) if key is not None else None
    records, failures = check_chain(read_log(log), public)
    signed = sum(1 for r in records if "sig" in r)
    if json_out:
        emit_json({"ok": not failures, "records": len(records), "signed": signed, "failures": failures})
    else:
        for failure in failures:
            out_console.print(f"  - {failure}", highlight=False, markup=False, soft_wrap=True)
        out_console.print(f"{log}: {len(records)} records ({signed} signed): {'ok' if not failures else 'FAILED'}")
    if failures:
        raise typer.Exit(EXIT_FAILED)
