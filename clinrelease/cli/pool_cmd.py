"""``clinrelease pool build|check|show``: make, review and describe donor pools."""

from __future__ import annotations

from pathlib import Path

import typer

from clinrelease.cli.app import pool_app
from clinrelease.cli.common import EXIT_FAILED, JsonOption, emit_json, err_console, handles_errors, out_console


@pool_app.command("build")
@handles_errors
def build_command(
    folder: Path = typer.Argument(..., help="Folder to write the donor images to (new or empty)."),
    from_generator: int = typer.Option(..., "--from-generator", min=2, help="How many vetted generated faces to write."),
    json_: bool = JsonOption,
) -> None:
    """Write a folder of vetted generated donor faces for a site to review and use as `pool: FOLDER`."""
    from clinrelease.face.generator import LICENCE
    from clinrelease.face.pool_check import build_generated_pool

    written = build_generated_pool(from_generator, folder, progress=None if json_ else lambda p: err_console.print(f"  {p.name}"))
    if json_:
        emit_json({"folder": str(folder), "files": [p.name for p in written], "licence": LICENCE})
        return
    typer.echo(f"{len(written)} donors in {folder}\nlicence: {LICENCE}")


@pool_app.command("check")
@handles_errors
def check_command(
    folder: Path = typer.Argument(..., help="A donor pool folder."),
    k: int = typer.Option(3, "--k", min=2, help="Donors per composite (the profile's k_donors)."),
    json_: bool = JsonOption,
) -> None:
    """Check a donor folder: usable faces, duplicates and look-alikes, the chance two patients share a donor.

    Exit code 1 when the folder is not usable as a release's pool (a file rejected, a duplicate
    donor, or fewer than k donors).
    """
    from clinrelease.face.pool_check import check_pool

    result = check_pool(folder, k)
    if json_:
        emit_json(result.to_dict())
    else:
        p = result.shared_donor_probability
        lines = [f"{folder}: {len(result.usable)} usable donors" + (f"; two patients share a donor at k={k} with probability {p:.2f}" if p is not None else "")]
        lines += [f"  rejected {r['file']}: {r['reason']}" for r in result.rejected]
        lines += [f"  vetting {r['file']}: {r['reason']}" for r in result.vetting]
        if result.vetting:
            counts = ", ".join(f"{kind} {n}" for kind, n in result.vetting_counts.items())
            lines.append(f"  the generator's vetting would reject {len(result.vetting)} of {len(result.usable)} donors: {counts}")
        lines += [f"  duplicate: {d['a']} ~ {d['b']} (both recognizers)" for d in result.duplicates]
        lines += [f"  look-alike: {d['a']} ~ {d['b']} ({', '.join(d['recognizers'])})" for d in result.lookalikes]
        if result.licence:
            lines.append(f"  licence: {result.licence}")
        lines.append("usable as a pool" if result.ok else "NOT usable as a pool")
        out_console.print("\n".join(lines), highlight=False, markup=False, soft_wrap=True)
    if not result.ok:
        raise typer.Exit(EXIT_FAILED)


@pool_app.command("show")
@handles_errors
def show_command(
    k: int = typer.Option(3, "--k", min=2, help="Donors per composite (the profile's k_donors)."),
    json_: bool = JsonOption,
) -> None:
    """Describe the built-in donor pool and whether the face generator (pool: generator) is installed."""
    from clinrelease.face.pool_check import builtin_pool_summary

    info = builtin_pool_summary(k)
    if json_:
        emit_json(info)
        return
    b, g = info["builtin"], info["generator"]
    typer.echo(
        f"built-in pool: {len(b['donors'])} donors ({', '.join(b['donors'])}); two patients share a donor at k={k} "
        f"with probability {b['shared_donor_probability']:.2f}: enough to try the tool, not to release\n"
        f"generator (pool: generator): {'installed' if g['installed'] else 'not installed: ' + g['install']}\n"
        f"  licence: {g['licence']}"
    )
