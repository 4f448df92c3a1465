"""`clinrelease pacs run` (a release from a DICOMweb source to a DICOMweb target) and `pacs plugin`."""

from __future__ import annotations

import getpass
import shutil
from pathlib import Path

import typer

from clinrelease.cli.app import app
from clinrelease.cli.common import (
    ClinicalOption, DuaOption, EscrowToOption, IrbOption, JsonOption, KeysOption, OperatorOption, VaultOption, WorkersOption,
    emit_json, err_console, handles_errors, out_console, progress_bar, styled,
)
from clinrelease.cli.run_cmd import _print_summary
from clinrelease.files import write_json_atomic

pacs_app = typer.Typer(help="Release studies from a PACS over DICOMweb and push them to a research archive.", no_args_is_help=True)
app.add_typer(pacs_app, name="pacs")


def _write_progress(path: Path | None, stage: str, done: int, total: int, detail: str) -> None:
    if path is None:
        return
    write_json_atomic(path, {"stage": stage, "done": done, "total": total, "detail": detail})


@pacs_app.command("run")
@handles_errors
def pacs_run(
    profile: str = typer.Option(..., "--profile", "-p", help="Profile name or YAML file."),
    source: str = typer.Option(..., "--from", help="Source server: a name in the servers file, or a DICOMweb URL."),
    target: str = typer.Option(None, "--to", help="Target server for the released instances (a name or URL); none: release to the folder only."),
    study: list[str] = typer.Option(None, "--study", help="Study Instance UID to release; repeatable."),
    query: list[str] = typer.Option(None, "--query", help="QIDO-RS filter KEY=VALUE (PatientID, StudyDate=20240101-20241231, ...); repeatable."),
    output: Path = typer.Option(..., "--output", "-o", help="Local release folder (report, audit log, manifest, data)."),
    keys: Path = KeysOption,
    servers: Path = typer.Option(None, "--servers", help="Servers file (YAML) with URLs and credentials (default: $CLINRELEASE_SERVERS)."),
    staging: Path = typer.Option(None, "--staging", help="Where studies are staged (default: OUTPUT.pacs; removed after a complete run)."),
    keep_staging: bool = typer.Option(False, "--keep-staging", help="Keep the staged originals after the run."),
    workers: int = WorkersOption,
    clinical: Path = ClinicalOption,
    escrow_to: list[Path] = EscrowToOption,
    vault: Path = VaultOption,
    irb: str = IrbOption,
    dua: str = DuaOption,
    operator: str = OperatorOption,
    progress_file: Path = typer.Option(None, "--progress-file", help="Write the current stage as JSON here (for the Orthanc plugin)."),
    json_out: bool = JsonOption,
) -> None:
    """Fetch the chosen studies with WADO-RS, release them as `run` does, then STOW-RS the released instances.

    Nothing is pushed before the release is signed and its audit log verifies. Re-running the same
    command resumes: studies already staged are not fetched again, items already done are skipped,
    and instances the target holds are not pushed again. Exit codes as `run`, and 7 when a server
    could not be reached, refused the credentials, or broke off.
    """
    from clinrelease.pacs.flow import run_pacs_release
    from clinrelease.pacs.servers import resolve_server
    from clinrelease.pacs.source import parse_query
    from clinrelease.release import ItemRecord, ReleaseOptions

    from clinrelease.errors import ConfigError

    if not study and not query:
        raise ConfigError("name the studies to release: --study UID (repeatable) or --query KEY=VALUE")
    filters = parse_query(list(query or []))
    src = resolve_server(source, "source", servers)
    dst = resolve_server(target, "target", servers) if target else None
    opts = ReleaseOptions(
        profile=profile,
        inputs=[],
        output=output,
        keys_dir=keys,
        clinical=clinical,
        workers=workers,
        escrow_to=list(escrow_to or []),
        vault=vault,
        operator=operator or getpass.getuser(),
        irb=irb,
        dua=dua,
    )
    with progress_bar(enabled=not json_out) as bar:
        task = bar.add_task("select", total=None)

        def progress(stage: str, done: int, total: int, detail: str) -> None:
            bar.update(task, description=stage, completed=done, total=total or None)
            _write_progress(progress_file, stage, done, total, detail)

        def finished(record: ItemRecord) -> None:
            if not record.released and not json_out:
                err_console.print(styled(f"{record.status.value}:", "yellow", f"{record.input}: {'; '.join(record.reasons[:3])}"), soft_wrap=True)

        try:
            result = run_pacs_release(opts, src, dst, list(study or []), filters, staging, keep_staging, progress, finished)
        except Exception as exc:
            _write_progress(progress_file, "failed", 0, 0, str(exc))
            raise
    summary = result.release
    pushed = None
    if result.push is not None:
        pushed = {"target": dst.label, "pushed": result.push.pushed, "already_there": result.push.already_there, "studies": result.push.studies}
    if json_out:
        emit_json(
            {
                "output": str(summary.output),
                "report": str(summary.report) if summary.report else None,
                "counts": summary.counts,
                "studies": [{"study_uid": s.study_uid, "instances": s.instances, "fetched": s.fetched} for s in result.studies],
                "push": pushed,
                "items": [{"input": r.input, "status": r.status.value, "reasons": r.reasons, "output": r.output} for r in summary.records],
                "exit_code": summary.exit_code,
            }
        )
    else:
        out_console.print(f"staged {len(result.studies)} studies from {src.label}")
        _print_summary(summary, False)
        if pushed:
            out_console.print(f"pushed {pushed['pushed']} instances to {dst.label} ({pushed['already_there']} were there already)")
    raise typer.Exit(summary.exit_code)


@pacs_app.command("plugin")
@handles_errors
def pacs_plugin(
    install: Path = typer.Option(None, "--install", help="Copy the plugin script into this folder (e.g. /etc/orthanc/)."),
) -> None:
    """Print the path of the Orthanc plugin script (orthanc-python), or copy it with --install DIR."""
    import importlib.util

    # found, not imported: the script imports `orthanc`, which exists only inside Orthanc
    script = Path(importlib.util.find_spec("clinrelease.pacs.orthanc_plugin").origin)
    if install is None:
        out_console.print(str(script))
        return
    install.mkdir(parents=True, exist_ok=True)
    target = install / "clinrelease_plugin.py"
    shutil.copyfile(script, target)
    out_console.print(f"installed {target}; set \"PythonScript\": \"{target}\" and a \"ClinRelease\" section in Orthanc's configuration (README)")
