"""``clinrelease reverse RELEASED_FILE --vault DIR --key CUSTODIAN_KEY --output FILE``."""

from __future__ import annotations

from pathlib import Path

import typer

from clinrelease.cli.app import app
from clinrelease.cli.common import JsonOption, emit_json, handles_errors, out_console
from clinrelease.cli.keys_cmd import read_passphrase, warn_legacy_custodian_keys


@app.command("reverse")
@handles_errors
def reverse_command(
    released_file: Path = typer.Argument(..., help="A file from the release."),
    vault: Path = typer.Option(..., "--vault", help="The escrow vault folder."),
    key: list[Path] = typer.Option(..., "--key", help="Custodian private key; repeat for an M-of-N escrow."),
    output: Path = typer.Option(..., "--output", "-o", help="Where to write the restored original."),
    log: Path | None = typer.Option(None, "--log", help="Site's internal audit log to append a signed reversal event to."),
    signing_key: Path | None = typer.Option(None, "--signing-key", help="Ed25519 key that signs the reversal event."),
    operator: str | None = typer.Option(None, "--operator", help="Who reverses (recorded); default $USER."),
    reason: str = typer.Option("", "--reason", help="Why (recorded in the reversal event)."),
    json_out: bool = JsonOption,
) -> None:
    """Restore the original of a released file bit for bit from the escrow vault.

    Needs the custodian key(s) and passphrase(s) (CLINRELEASE_PASSPHRASE or prompted). The vault
    entry must belong to this very file (its digest and SOP Instance UID, and the entry's MAC);
    otherwise it refuses with exit code 4. Nothing is written unless every chunk authenticates and
    the original's digest matches.
    """
    from clinrelease.audit.chain import record_reversal
    from clinrelease.crypto.escrow import reverse
    from clinrelease.crypto.keys import load_signing_private
    from clinrelease.errors import ConfigError

    if (log is None) != (signing_key is None):
        raise ConfigError("--log and --signing-key go together: the reversal event must be signed")
    signer = load_signing_private(signing_key) if signing_key is not None else None
    warn_legacy_custodian_keys(key)
    phrases = [read_passphrase(f"custodian key {path}", confirm=False) for path in key]
    result = reverse(released_file, vault, key, phrases, output)
    record = record_reversal(log, result, signer, operator=operator, reason=reason) if log is not None else None
    info = {
        "output": str(result.output),
        "original_sha256": result.original_sha256,
        "original_size": result.original_size,
        "release_id": result.release_id,
        "output_uid": result.output_uid,
        "released_sha256": result.released_sha256,
        "custodians": result.custodians,
        "audit_seq": record["seq"] if record else None,
        "entry_authenticated": result.entry_authenticated,
    }
    if json_out:
        emit_json(info)
        return
    out_console.print(
        f"restored {result.output} ({result.original_size} bytes, sha256 {result.original_sha256}) "
        f"from release {result.release_id}"
    )
    if not result.entry_authenticated:
        out_console.print(
            "note: a legacy vault entry (no MAC); it was bound to this file by the encrypted chunks' "
            "authenticated data only"
        )
    if record:
        out_console.print(f"reversal event seq {record['seq']} appended to {log}")
