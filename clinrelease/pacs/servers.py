"""Which DICOMweb servers a release talks to, with what credentials, and what their errors mean.

A server is named in a servers file (YAML, ``--servers FILE`` or ``CLINRELEASE_SERVERS``)::

    servers:
      clinical:
        url: https://pacs.example.org/dicom-web
        username: releasebot
        password_env: CLINICAL_DICOMWEB_PASSWORD   # or password: ..., only in a file of mode 0600
        ca_bundle: /etc/ssl/certs/site-ca.pem      # optional; TLS is always verified unless verify_tls: false
        timeout_s: 30

or given as a URL, whose credentials then come from ``CLINRELEASE_SOURCE_USERNAME`` /
``CLINRELEASE_SOURCE_PASSWORD`` (``..._TARGET_...`` for the target). Credentials are never taken from
the command line (a URL with ``user:password@`` is refused) and never appear in a message.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from clinrelease.errors import ConfigError, ServerError

#: seconds a request may wait for the server to connect or send the next bytes
DEFAULT_TIMEOUT_S = 30.0
#: the environment variable naming the servers file when ``--servers`` is not given
SERVERS_ENV = "CLINRELEASE_SERVERS"


@dataclass(frozen=True)
class Server:
    """One DICOMweb endpoint. ``name`` is what messages call it (never carries credentials)."""

    name: str
    url: str
    username: str | None = None
    password: str | None = None
    verify: bool | str = True  # True, False, or a CA bundle path (requests' ``verify``)
    timeout_s: float = DEFAULT_TIMEOUT_S

    def __repr__(self) -> str:  # a server may be printed or logged: never its password
        return f"Server(name={self.name!r}, url={self.url!r})"

    @property
    def label(self) -> str:
        return self.name if self.name == self.url else f"{self.name} ({self.url})"


def resolve_server(ref: str, role: str, servers_file: Path | None = None) -> Server:
    """The server ``ref`` names: an entry of the servers file, or a URL with credentials from the environment.

    ``role`` is ``source`` or ``target`` (which environment variables a bare URL reads).
    """
    servers_file = servers_file or (Path(os.environ[SERVERS_ENV]) if os.environ.get(SERVERS_ENV) else None)
    entries = _read_servers_file(servers_file) if servers_file else {}
    if ref in entries:
        return _server_from_entry(ref, entries[ref], servers_file)
    parts = urlsplit(ref)
    if parts.scheme not in ("http", "https"):
        where = f"in {servers_file}" if servers_file else "(no servers file: give --servers FILE or set CLINRELEASE_SERVERS)"
        raise ConfigError(f"{role} server {ref!r} is neither a server named {where} nor an http(s) URL")
    if parts.username or parts.password:
        raise ConfigError(
            f"the {role} URL carries credentials; put them in a servers file or in "
            f"CLINRELEASE_{role.upper()}_USERNAME / CLINRELEASE_{role.upper()}_PASSWORD, never on the command line"
        )
    prefix = f"CLINRELEASE_{role.upper()}_"
    return Server(
        name=ref,
        url=ref.rstrip("/"),
        username=os.environ.get(prefix + "USERNAME"),
        password=os.environ.get(prefix + "PASSWORD"),
    )


def _read_servers_file(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise ConfigError("servers file not found", path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path) from None
    servers = doc.get("servers") if isinstance(doc, dict) else None
    if not isinstance(servers, dict):
        raise ConfigError("a servers file has one mapping `servers:` of names to {url, username, password_env, ...}", path)
    return servers


def _server_from_entry(name: str, entry: object, path: Path) -> Server:
    if not isinstance(entry, dict) or not entry.get("url"):
        raise ConfigError(f"server {name!r} needs a url", path)
    unknown = set(entry) - {"url", "username", "password", "password_env", "ca_bundle", "verify_tls", "timeout_s"}
    if unknown:
        raise ConfigError(f"server {name!r}: unknown settings {sorted(unknown)}", path)
    if urlsplit(str(entry["url"])).username:
        raise ConfigError(f"server {name!r}: put the username in `username:`, not in the URL", path)
    password = entry.get("password")
    if password is not None and path.stat().st_mode & 0o077:
        raise ConfigError(
            f"server {name!r} has a password in a file that group or others may read; "
            f"run `chmod 600 {path}` or use password_env",
            path,
        )
    if entry.get("password_env"):
        password = os.environ.get(str(entry["password_env"]))
        if password is None:
            raise ConfigError(f"server {name!r}: the environment variable {entry['password_env']} is not set", path)
    verify: bool | str = bool(entry.get("verify_tls", True))
    if verify and entry.get("ca_bundle"):
        bundle = Path(str(entry["ca_bundle"]))
        if not bundle.is_file():
            raise ConfigError(f"server {name!r}: CA bundle {bundle} not found", path)
        verify = str(bundle)
    return Server(
        name=name,
        url=str(entry["url"]).rstrip("/"),
        username=str(entry["username"]) if entry.get("username") is not None else None,
        password=None if password is None else str(password),
        verify=verify,
        timeout_s=float(entry.get("timeout_s", DEFAULT_TIMEOUT_S)),
    )


def connect(server: Server):
    """A ``dicomweb_client`` client for ``server``: bounded timeouts, TLS as configured, no silent retries.

    Retries are off: a failure is reported at once with the server and the study, and a re-run
    resumes (what was staged or pushed stays done).
    """
    import logging

    import requests
    from dicomweb_client.api import DICOMwebClient

    # retrying logs every failed attempt with its traceback; the failure is reported as one message instead
    logging.getLogger("retrying").setLevel(logging.CRITICAL)
    session = requests.Session()
    session.verify = server.verify
    session.trust_env = False  # no proxy or .netrc credentials picked up behind the user's back
    if server.username is not None:
        session.auth = (server.username, server.password or "")
    client = DICOMwebClient(server.url, session=session, timeout=(min(10.0, server.timeout_s), server.timeout_s))
    client.set_http_retry_params(retry=False)
    return client


def server_error(exc: BaseException, server: Server, doing: str) -> ServerError:
    """A clear message for a failed request: which server, doing what (the study is in ``doing``)."""
    import requests

    where = f"{server.label}: {doing}"
    if isinstance(exc, requests.exceptions.SSLError):
        found = re.search(r"certificate verify failed: ([^()'\"]+)", str(exc))
        why = found.group(1).strip() if found else "the certificate or the connection was not accepted"
        return ServerError(f"{where}: TLS verification failed ({why}); give the site's CA with ca_bundle in the servers file")
    if isinstance(exc, requests.exceptions.Timeout):
        return ServerError(f"{where}: no answer within {server.timeout_s:g} s (timeout_s in the servers file)")
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        code = exc.response.status_code
        if code == 401:
            return ServerError(f"{where}: the server refused the credentials (401 Unauthorized); check the username and password")
        if code == 403:
            return ServerError(f"{where}: the account may not do this (403 Forbidden); ask the server's administrator")
        return ServerError(f"{where}: the server answered {code} {exc.response.reason}")
    if isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.ChunkedEncodingError)):
        return ServerError(f"{where}: the connection failed or was dropped ({_connection_cause(exc)})")
    return ServerError(f"{where}: the answer was incomplete or not DICOM ({type(exc).__name__}: {_short(exc)})")


def _connection_cause(exc: BaseException) -> str:
    text = str(exc)
    for marker, cause in (
        ("Connection refused", "connection refused: is the server running?"),
        ("Name or service not known", "unknown host name"),
        ("RemoteDisconnected", "the server closed the connection without answering"),
        ("Connection aborted", "the connection was aborted"),
        ("Connection broken", "the answer was cut off"),
        ("IncompleteRead", "the answer was cut off"),
        ("Connection reset", "the connection was reset"),
    ):
        if marker in text:
            return cause
    return _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
