"""``clinrelease keys init DIR``, ``clinrelease keys custodian NAME DIR [--rsa]`` and ``keys rewrap KEY``."""

from __future__ import annotations

from pathlib import Path

import typer

from clinrelease.cli.app import keys_app
from clinrelease.cli.common import JsonOption, emit_json, handles_errors, out_console
from clinrelease.errors import ConfigError


#: environment variable scripts use to pass the new passphrase to ``keys rewrap``
NEW_PASSPHRASE_ENV = "CLINRELEASE_NEW_PASSPHRASE"


def read_passphrase(what: str, confirm: bool, env: str | None = None) -> str:
    """The passphrase from ``env`` (default ``CLINRELEASE_PASSPHRASE``), else prompted for (hidden input).

    Raises :class:`ConfigError` when neither is available (no terminal input), so scripts get a
    message and exit code 2 instead of hanging or a traceback.
    """
    import os

    from clinrelease.crypto.keys import PASSPHRASE_ENV

    env = env or PASSPHRASE_ENV
    phrase = os.environ.get(env)
    if phrase:
        return phrase
    try:
        phrase = typer.prompt(f"Passphrase for {what}", hide_input=True, confirmation_prompt=confirm)
    except (typer.Abort, EOFError):  # no terminal input (scripts, CI, closed stdin)
        raise ConfigError(f"no passphrase for {what}: set {env} or enter it when prompted") from None
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

    The passphrase is read from CLINRELEASE_PASSPHRASE or prompted for twice. It must have at least
    12 characters, 6 different ones, and not be a keyboard run or a padded common password; it is
    stretched with Argon2id (64 MiB, 3 passes, 4 lanes).
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


@keys_app.command("rewrap")
@handles_errors
def rewrap(
    key: Path = typer.Argument(..., help="A custodian private key file (NAME.key)."),
    json_out: bool = JsonOption,
) -> None:
    """Re-protect a custodian key under a new passphrase with Argon2id; upgrades PBKDF2-protected keys.

    The current passphrase is read from CLINRELEASE_PASSPHRASE or prompted for; the new one from
    CLINRELEASE_NEW_PASSPHRASE or prompted for twice. The key pair, and every escrow to it, stay valid.
    """
    from clinrelease.crypto.keys import custodian_key_is_legacy, rewrap_custodian

    if not key.is_file():
        raise ConfigError("custodian key not found", key)
    was_legacy = custodian_key_is_legacy(key)
    current = read_passphrase(f"custodian key {key}", confirm=False)
    new = read_passphrase(f"custodian key {key} (new)", confirm=True, env=NEW_PASSPHRASE_ENV)
    rewrap_custodian(key, current, new)
    if json_out:
        emit_json({"key": str(key), "kdf": "argon2id", "was_legacy": was_legacy})
        return
    out_console.print(f"re-protected {key} with Argon2id" + (" (it was PBKDF2-protected)" if was_legacy else ""))


def warn_legacy_custodian_keys(paths: list[Path]) -> None:
    """Tell the user which custodian keys still use the weak legacy protection."""
    from clinrelease.cli.common import err_console
    from clinrelease.crypto.keys import custodian_key_is_legacy

    for path in paths:
        if path.is_file() and custodian_key_is_legacy(path):
            err_console.print(
                f"[yellow]warning:[/] {path} is protected by PBKDF2 with 2048 iterations, which a guessed "
                f"passphrase breaks quickly; run `clinrelease keys rewrap {path}` to re-protect it with Argon2id",
                highlight=False, soft_wrap=True,
            )
