"""``clinrelease profiles list|show|validate``: find, read and check release profiles."""

from __future__ import annotations

import typer

from clinrelease.cli.app import profiles_app
from clinrelease.cli.common import EXIT_USAGE, JsonOption, emit_json, err_console, handles_errors, out_console, styled


@profiles_app.command("list")
@handles_errors
def list_command(
    all_: bool = typer.Option(False, "--all", help="Also list building blocks (names starting with '_')."),
    json_: bool = JsonOption,
) -> None:
    """List the profiles on the search path: name, description, parent."""
    from rich.table import Table

    from clinrelease.profiles import list_profiles, profile_dirs

    infos = list_profiles(include_hidden=all_)
    if json_:
        emit_json(
            {
                "profiles": [
                    {"name": i.name, "description": i.description, "extends": i.extends, "path": str(i.path)}
                    for i in infos
                ],
                "search_path": [str(d) for d in profile_dirs()],
            }
        )
        return
    table = Table("name", "description", "extends", show_lines=False)
    for info in infos:
        table.add_row(info.name, info.description, info.extends or "")
    out_console.print(table)


@profiles_app.command("show")
@handles_errors
def show_command(
    name: str = typer.Argument(..., help="A profile name or a path to a .yaml file."),
    json_: bool = JsonOption,
) -> None:
    """Print a profile resolved (extends merged, every default filled in), with its digest."""
    import yaml

    from clinrelease.profiles import load_profile

    profile = load_profile(name)
    notice = ""
    if profile.anonymizer is not None and profile.anonymizer.name == "swap" and profile.anonymizer.pool == "generator":
        from clinrelease.face.generator import LICENCE

        notice = LICENCE
    if json_:
        emit_json({"profile": profile.to_dict(), "digest": profile.digest, "source": str(profile.source), **({"licence": notice} if notice else {})})
        return
    header = f"# {profile.name} from {profile.source}\n# digest {profile.digest}\n" + (f"# licence: {notice}\n" if notice else "")
    typer.echo(header + yaml.safe_dump(profile.to_dict(), sort_keys=False, allow_unicode=True, width=100))


@profiles_app.command("validate")
@handles_errors
def validate_command(
    name: str = typer.Argument(..., help="A profile name or a path to a .yaml file."),
    json_: bool = JsonOption,
) -> None:
    """Check a profile against the schema; exit 0 when usable, 2 with every problem listed."""
    from clinrelease.profiles import load_profile, validate_profile

    problems = validate_profile(name)
    digest = None if problems else load_profile(name).digest
    if json_:
        emit_json(
            {
                "profile": name,
                "ok": not problems,
                "digest": digest,
                "problems": [{"file": p.file, "key": p.key, "message": p.message} for p in problems],
            }
        )
    elif problems:
        err_console.print(styled("error:", "bold red", f"{len(problems)} problem(s) in profile {name}:"), highlight=False)
        for problem in problems:
            err_console.print(f"  {problem}", highlight=False, markup=False, soft_wrap=True)
    else:
        typer.echo(f"{name}: ok ({digest})")
    if problems:
        raise typer.Exit(EXIT_USAGE)
