"""``clinrelease inspect FILE``: describe one input item and list where it may carry PHI."""

from __future__ import annotations

from pathlib import Path

import typer

from clinrelease.cli.app import app
from clinrelease.cli.common import JsonOption, emit_json, handles_errors, out_console


@app.command("inspect")
@handles_errors
def inspect_command(
    file: Path = typer.Argument(..., help="A DICOM video or a plain video file (MP4, MKV, AVI)."),
    json_: bool = JsonOption,
) -> None:
    """Show a file's video parameters and every place it may carry PHI. Reads only; never writes.

    PHI places: header attributes with their PS3.15 Annex E Basic Profile action (at any sequence
    depth), private attributes, container metadata, and the burned-in-annotation flags.
    """
    from clinrelease.inspect import inspect_file

    report = inspect_file(file)
    if json_:
        emit_json(report.to_dict())
        return
    _print_report(report)


def _print_report(report) -> None:
    from rich.table import Table

    facts = Table(show_header=False, box=None, pad_edge=False)
    facts.add_column(style="bold")
    facts.add_column()
    rows = [
        ("file", str(report.path)),
        ("kind", report.kind),
        ("SOP class", f"{report.sop_class_name} ({report.sop_class})" if report.sop_class else "-"),
        ("transfer syntax", f"{report.transfer_syntax_name} ({report.transfer_syntax})" if report.transfer_syntax else "-"),
        ("codec", report.codec or "-"),
        ("frames", str(report.frames)),
        ("fps", f"{report.fps:.3f}"),
        ("size", f"{report.columns}x{report.rows} {report.photometric_interpretation}"),
        ("duration", f"{report.duration_s:.2f} s"),
        ("rotation", report.orientation.describe()),
        ("burned-in annotation", report.burned_in_annotation or "not stated"),
    ]
    rows += [(key.replace("_", " "), str(value)) for key, value in report.summary.items()]
    for key, value in rows:
        facts.add_row(key, value)
    out_console.print(facts)

    phi = Table(title=f"potential PHI: {len(report.phi)} places (PS3.15 Annex E {report.annex_e_edition})")
    for column in ("where", "tag / key", "name", "action", "VR"):
        phi.add_column(column)
    for loc in report.phi:
        phi.add_row(loc.where, loc.tag, loc.name, loc.action, loc.vr or "")
    out_console.print(phi)
