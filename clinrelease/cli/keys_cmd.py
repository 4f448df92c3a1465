"""``clinrelease keys init DIR`` and ``clinrelease keys custodian NAME DIR [--rsa]``."""

from __future__ import annotations

from pathlib import Path

import typer

from clinrelease.cli.app import keys_app
from clinrelease.cli.common import JsonOption, emit_json, handles_errors, out_console
from clinrelease.errors import ConfigError


def read_passphrase(what: str, confirm: bool) -> str:
    """The passphrase from ``CLINRELEASE_PASSPHRASE``, else prompted for (hidden input).

    Raises :class:`ConfigError` when neither is available (no terminal input), so scripts get a
    message and exit code 2 instead of hanging or a traceback.
    """
    from clinrelease.crypto.keys import PASSPHRASE_ENV, passphrase_from_env

    phrase = passphrase_from_env()
    if phrase:
        return phrase
    try:
        phrase = typer.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm)
    except (typer.Abort, EOFError):  # no terminal input (scripts, CI, closed stdin)
        raise ConfigError(f"no passphrase for {what}: set {PASSPHRASE_ENV} or enter it when prompted") from None
    if not phrase:
        raise ConfigError(f"empty passphrase for {what}")
    return phrase


@keys_app.command("init")
@handles_errors
def init(
    directory: Path = typer.Argument(..., help="Key folder to create (release.key, signing.key, signing.pub)."),
    json_out: bool = JsonOption,
) -> None:
    """Create the release HMAC key and the Ed25519 signing key pair (private files mode 0600)."""
    from clinrelease.crypto.keys import RELEASE_KEY_FILE, SIGNING_KEY_FILE, SIGNING_PUB_FILE, init_keys

    keys = init_keys(directory)
    info = {
        "directory": str(directory),
        "release_key": str(directory / RELEASE_KEY_FILE),
        "signing_key": str(directory / SIGNING_KEY_FILE),
        "signing_pub": str(directory / SIGNING_PUB_FILE),
        "signing_key_id": keys.signing_key_id,
    }
    if json_out:
        emit_json(info)
        return
    out_console.print(f"created {info['release_key']}, {info['signing_key']} (mode 0600) and {info['signing_pub']}")
    out_console.print(f"signing key id {keys.signing_key_id}; give {info['signing_pub']} to auditors")


@keys_app.command("custodian")
@handles_errors
def custodian(
    name: str = typer.Argument(..., help="Custodian name; the files are DIR/NAME.key and DIR/NAME.pub."),
    directory: Path = typer.Argument(..., help="Folder for the key pair."),
    rsa: bool = typer.Option(False, "--rsa", help="RSA-3072 (RSA-OAEP) instead of X25519 (HPKE), for HSM/smartcards."),
    json_out: bool = JsonOption,
) -> None:
    """Create a passphrase-protected custodian key pair for escrow and reversal.

    The passphrase is read from CLINRELEASE_PASSPHRASE or prompted for twice.
    """
    from clinrelease.crypto.keys import create_custodian

    phrase = read_passphrase(f"custodian {name}", confirm=True)
    made = create_custodian(name, directory, phrase, kind="rsa3072" if rsa else "x25519")
    info = {
        "name": made.name,
        "kind": made.kind,
        "private_key": str(made.private_path),
        "public_key": str(made.public_path),
        "fingerprint": made.fingerprint,
    }
    if json_out:
        emit_json(info)
        return
    out_console.print(f"created {made.private_path} (mode 0600, passphrase-protected) and {made.public_path}")
    out_console.print(f"fingerprint {made.fingerprint}; escrow to it with --escrow-to {made.public_path}")
