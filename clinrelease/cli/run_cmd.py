"""`clinrelease run`, `merge` and `demo`: make a release."""

from __future__ import annotations

import getpass
from pathlib import Path

import typer

from clinrelease.cli.app import app
from clinrelease.cli.common import (
    ClinicalOption, DuaOption, EscrowToOption, IrbOption, JsonOption, KeysOption, OperatorOption, VaultOption, WorkersOption,
    emit_json, err_console, handles_errors, out_console, progress_bar, styled,
)
from clinrelease.errors import ConfigError


def _parse_shard(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        index, count = (int(v) for v in value.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {value!r}: write it as i/N, e.g. 0/4") from None
    if not (count >= 1 and 0 <= index < count):
        raise ConfigError(f"--shard {value!r}: need 0 <= i < N")
    return index, count


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "output": str(summary.output),
                "quarantine": str(summary.quarantine),
                "finalized": summary.finalized,
                "report": str(summary.report) if summary.report else None,
                "counts": summary.counts,
                "gallery": summary.gallery,
                "items": [
                    {"input": r.input, "status": r.status.value, "reasons": r.reasons, "output": r.output}
                    for r in summary.records
                ],
                "exit_code": summary.exit_code,
            }
        )
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title="Release", show_lines=False)
    for column in ("input", "status", "output / reasons"):
        table.add_column(column, overflow="fold")
    colours = {"released": "green", "quarantined": "yellow", "error": "red"}
    for r in summary.records:
        detail = r.output or "; ".join(r.reasons)
        table.add_row(r.input, Text(r.status.value, style=colours.get(r.status, "white")), detail)
    out_console.print(table)
    counts = summary.counts
    out_console.print(
        f"released {counts.get('released', 0)}, quarantined {counts.get('quarantined', 0)}, errors {counts.get('error', 0)}"
    )
    if summary.finalized:
        out_console.print(f"release: {summary.output}")
        out_console.print(f"QA report: {summary.report}")
    else:
        out_console.print(f"shard done; run `clinrelease merge {summary.output} --keys DIR` after the last shard")
    if counts.get("quarantined") or counts.get("error"):
        out_console.print(f"quarantine: {summary.quarantine}")
    if counts.get("error"):
        n = counts["error"]
        out_console.print(
            f"{n} input{'s' if n != 1 else ''} could not be read (status 'error' above, reasons in the report); "
            f"the rest of the batch went on (exit code {summary.exit_code})"
        )


@app.command()
@handles_errors
def run(
    profile: str = typer.Option(..., "--profile", "-p", help="Profile name (see `clinrelease profiles list`) or a YAML file."),
    inputs: list[Path] = typer.Option(..., "--input", "-i", help="Input folder (searched recursively) or file; repeatable."),
    output: Path = typer.Option(..., "--output", "-o", help="Release folder to create or resume."),
    keys: Path = KeysOption,
    clinical: Path = ClinicalOption,
    metadata: Path = typer.Option(None, "--metadata", help="CSV naming each plain video (column `file`) and its patient and study."),
    quarantine: Path = typer.Option(None, "--quarantine", help="Where failing items go (default: OUTPUT.quarantine)."),
    work: Path = typer.Option(None, "--work", help="Working state: records, staging, internal log (default: OUTPUT.work)."),
    workers: int = WorkersOption,
    executor: str = typer.Option("process", "--executor", help="`process` (local pool) or `dask`."),
    scheduler: str = typer.Option(None, "--scheduler", help="Dask scheduler address (default: a local cluster)."),
    shard: str = typer.Option(None, "--shard", help="Process only shard i of N (`i/N`); then `clinrelease merge`."),
    escrow_to: list[Path] = EscrowToOption,
    vault: Path = VaultOption,
    m_of_n: int = typer.Option(None, "--m-of-n", help="Custodians needed to reverse (default 1)."),
    irb: str = IrbOption,
    dua: str = DuaOption,
    operator: str = OperatorOption,
    json_out: bool = JsonOption,
) -> None:
    """De-identify, anonymize and verify every input item; release what passes, quarantine the rest.

    Re-running the same command resumes: items already done with the same input, profile and key
    are skipped; items no longer in the input are withdrawn from the release. Exit code 0 when
    everything was released, 1 when anything was quarantined, 2 on a usage or input error, 3 when
    some inputs could not be read (the rest was released), 5 on an OS or storage error (the release
    is left as it was), 6 when another run holds the release's lock.
    """
    from clinrelease.release import ItemRecord, ReleaseOptions, run_release

    if executor not in ("process", "dask"):
        raise ConfigError(f"--executor {executor!r}: use `process` or `dask`")
    opts = ReleaseOptions(
        profile=profile,
        inputs=list(inputs),
        output=output,
        keys_dir=keys,
        quarantine=quarantine,
        work=work,
        metadata=metadata,
        clinical=clinical,
        workers=workers,
        executor=executor,
        scheduler=scheduler,
        shard=_parse_shard(shard),
        escrow_to=list(escrow_to or []),
        vault=vault,
        m_of_n=m_of_n,
        operator=operator or getpass.getuser(),
        irb=irb,
        dua=dua,
    )
    with progress_bar(enabled=not json_out) as progress:
        task = progress.add_task("items", total=None)

        def started(total: int) -> None:
            progress.update(task, total=total)

        def finished(record: ItemRecord) -> None:
            progress.advance(task)
            if not record.released and not json_out:
                err_console.print(
                    styled(f"{record.status.value}:", "yellow", f"{record.input}: {'; '.join(record.reasons[:3])}"),
                    soft_wrap=True,
                )

        summary = run_release(opts, on_start=started, on_item=finished)
    _print_summary(summary, json_out)
    raise typer.Exit(summary.exit_code)


@app.command()
@handles_errors
def merge(
    output: Path = typer.Argument(..., help="The release folder the shards wrote into."),
    keys: Path = typer.Option(Path("keys"), "--keys", "-k", help="Key folder holding signing.key."),
    quarantine: Path = typer.Option(None, "--quarantine", help="Quarantine folder (default: OUTPUT.quarantine)."),
    work: Path = typer.Option(None, "--work", help="Working state folder (default: OUTPUT.work)."),
    json_out: bool = JsonOption,
) -> None:
    """Close a release made with `run --shard i/N`: gallery attack, report, signed audit log, manifest."""
    from clinrelease.release import merge_release

    summary = merge_release(output, keys, quarantine=quarantine, work=work)
    _print_summary(summary, json_out)
    raise typer.Exit(summary.exit_code)


@app.command()
@handles_errors
def demo(
    output: Path = typer.Argument(Path("demo-release"), help="Folder for the demo (input/, keys/, release/)."),
    profile: str = typer.Option("pd_gait", "--profile", help="Profile to run the demo with."),
    json_out: bool = JsonOption,
) -> None:
    """Build a small demo input from face video shipped with the installed packages, then release it.

    Writes OUTPUT/input (DICOM video with planted PHI), OUTPUT/keys, and the release in
    OUTPUT/release with its QA report.
    """
    from clinrelease.demo import build_demo_input
    from clinrelease.release import ReleaseOptions, run_release

    output.mkdir(parents=True, exist_ok=True)
    demo_input = build_demo_input(output / "input")
    keys = output / "keys"
    if not (keys / "release.key").exists():
        from clinrelease.crypto.keys import init_keys

        init_keys(keys)
    if not json_out:
        out_console.print(f"demo input: {demo_input.folder} ({len(demo_input.files)} files, planted PHI)")
    opts = ReleaseOptions(
        profile=profile,
        inputs=[demo_input.folder],
        output=output / "release",
        keys_dir=keys,
        metadata=demo_input.metadata,
        clinical=demo_input.clinical,
        operator=getpass.getuser(),
    )
    with progress_bar(enabled=not json_out) as progress:
        task = progress.add_task("demo items", total=None)
        summary = run_release(
            opts, on_start=lambda n: progress.update(task, total=n), on_item=lambda r: progress.advance(task)
        )
    _print_summary(summary, json_out)
    if not json_out:
        out_console.print(f"verify it: clinrelease audit verify {summary.output} --key {keys / 'signing.pub'}")
    raise typer.Exit(summary.exit_code)
