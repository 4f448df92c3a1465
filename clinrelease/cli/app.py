"""The root ``clinrelease`` Typer application and the sub-applications, grouped by noun.

Command modules register on these objects; :mod:`clinrelease.cli` imports them all. Heavy imports
(models, codecs) happen inside command bodies so that ``--help`` stays instant.
"""

from __future__ import annotations

import typer

from clinrelease import __version__

app = typer.Typer(
    name="clinrelease",
    help=(
        "Release patient examination videos for research without releasing the patients.\n\n"
        "Typical use: `clinrelease keys init keys/` once, then "
        "`clinrelease run --profile pd_gait --input incoming/ --output release/ --keys keys/`."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

keys_app = typer.Typer(help="Create release keys, signing keys and custodian key pairs.", no_args_is_help=True)
profiles_app = typer.Typer(help="List, show and validate release profiles.", no_args_is_help=True)
audit_app = typer.Typer(help="Verify a release's signed audit log and manifest.", no_args_is_help=True)
swap_app = typer.Typer(help="Train and inspect learned face-swap models.", no_args_is_help=True)
pool_app = typer.Typer(help="Build, check and describe surrogate donor pools.", no_args_is_help=True)

app.add_typer(keys_app, name="keys")
app.add_typer(profiles_app, name="profiles")
app.add_typer(audit_app, name="audit")
app.add_typer(swap_app, name="swap")
app.add_typer(pool_app, name="pool")


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"clinrelease {__version__}")
        raise typer.Exit(0)


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Release patient examination videos for research without releasing the patients."""
