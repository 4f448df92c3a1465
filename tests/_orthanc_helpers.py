"""Real Orthanc servers on loopback ports for the DICOMweb tests, and a fault-injecting proxy.

Each :class:`Orthanc` is Debian's ``Orthanc`` binary with the DICOMweb plugin (and optionally the
Python plugin), its own configuration, storage and free port under a temporary folder, HTTP basic
authentication on, DICOM networking off. Tests skip with the reason when the binary or the plugin is
absent (``make install`` as root installs them).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

ORTHANC = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
PLUGINS = Path("/usr/share/orthanc/plugins")
USER, PASSWORD = "releasebot", "loopback-only-Secret-7"
TIMEOUT = 10


def require_orthanc(python: bool = False) -> None:
    """Skip unless Orthanc and its DICOMweb (and Python) plugins are installed."""
    needed = [Path(ORTHANC), PLUGINS / "libOrthancDicomWeb.so"] + ([PLUGINS / "libOrthancPython.so"] if python else [])
    missing = [str(p) for p in needed if not p.exists()]
    if missing:
        pytest.skip(f"Orthanc is not installed ({', '.join(missing)} missing); `make install` as root installs orthanc, orthanc-dicomweb, orthanc-python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Orthanc:
    """One Orthanc server; ``start()`` waits until it answers, ``stop()`` ends it (tests call it in finally)."""

    def __init__(self, folder: Path, name: str, python_script: Path | None = None, extra: dict | None = None, env: dict | None = None) -> None:
        self.folder = folder / name
        self.folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.port = free_port()
        self.python_script = python_script
        self.extra = extra or {}
        self.env = env
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def dicomweb(self) -> str:
        return f"{self.url}/dicom-web"

    def start(self) -> Orthanc:
        plugins = [str(PLUGINS / "libOrthancDicomWeb.so")]
        config = {
            "Name": self.name,
            "HttpPort": self.port,
            "DicomServerEnabled": False,
            "RemoteAccessAllowed": False,
            "StorageDirectory": str(self.folder / "db"),
            "IndexDirectory": str(self.folder / "db"),
            "AuthenticationEnabled": True,
            "RegisteredUsers": {USER: PASSWORD},
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
            "HttpTimeout": TIMEOUT,
        }
        if self.python_script is not None:
            plugins.append(str(PLUGINS / "libOrthancPython.so"))
            config["PythonScript"] = str(self.python_script)
        config["Plugins"] = plugins
        config.update(self.extra)
        path = self.folder / "orthanc.json"
        path.write_text(json.dumps(config, indent=2))
        self.log = open(self.folder / "orthanc.log", "wb")
        self.proc = subprocess.Popen([ORTHANC, str(path)], stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc {self.name} exited: {(self.folder / 'orthanc.log').read_text()[-2000:]}")
            try:
                if self.get("/system").ok:
                    return self
            except requests.ConnectionError:
                time.sleep(0.1)
        raise RuntimeError(f"Orthanc {self.name} did not answer within 30 s")

    def stop(self) -> None:
        self.terminate()
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=15)
        if self.proc is not None:
            self.log.close()
        self.proc = None

    def terminate(self) -> None:
        """Ask the server to shut down without waiting (``stop`` waits): servers shut down side by side."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def kill(self) -> None:
        """End the server at once (a crash, not a shutdown)."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=15)
            self.log.close()
            self.proc = None

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, auth=(USER, PASSWORD), timeout=TIMEOUT, **kw)

    def post(self, path: str, **kw) -> requests.Response:
        return requests.post(self.url + path, auth=(USER, PASSWORD), timeout=TIMEOUT, **kw)

    def delete(self, instance: str) -> None:
        requests.delete(f"{self.url}/instances/{instance}", auth=(USER, PASSWORD), timeout=TIMEOUT).raise_for_status()

    def upload(self, path: Path) -> str:
        answer = self.post("/instances", data=path.read_bytes())
        answer.raise_for_status()
        return answer.json()["ID"]

    def instances(self) -> list[str]:
        return sorted(self.get("/instances").json())

    def state(self) -> dict[str, str]:
        """Orthanc id -> SHA-256 of the stored file: what "unchanged" is checked against."""
        return {i: hashlib.sha256(self.get(f"/instances/{i}/file").content).hexdigest() for i in self.instances()}

    def files(self) -> dict[str, bytes]:
        """SOP Instance UID -> the stored file."""
        out = {}
        for i in self.instances():
            sop = self.get(f"/instances/{i}/simplified-tags").json()["SOPInstanceUID"]
            out[sop] = self.get(f"/instances/{i}/file").content
        return out


def tls_certificate(folder: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 and its key in one PEM (for FaultProxy's HTTPS; also the CA bundle)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    path = folder / "loopback.pem"
    path.write_bytes(
        cert.public_bytes(serialization.Encoding.PEM)
        + key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption())
    )
    return path


def servers_file(folder: Path, timeout_s: float = 5, ca_bundle: Path | None = None, **servers: Orthanc | str) -> Path:
    """A servers file naming each server (an Orthanc, or a URL) with the password read from the environment."""
    import yaml

    entries = {}
    for name, server in servers.items():
        url = server.dicomweb if isinstance(server, Orthanc) else server
        entries[name] = {"url": url, "username": USER, "password_env": "TEST_DICOMWEB_PASSWORD", "timeout_s": timeout_s}
        if ca_bundle is not None:
            entries[name]["ca_bundle"] = str(ca_bundle)
    path = folder / "servers.yaml"
    path.write_text(yaml.safe_dump({"servers": entries}))
    return path


class FaultProxy:
    """A loopback HTTP proxy in front of a server that answers ``status`` from the Nth WADO-RS instance
    request on (with ``stow``: the Nth STOW-RS request), or cuts the connection there (``status=None``),
    or waits ``delay`` seconds first; ``hook`` runs first (e.g. to kill the server behind it). With ``tls``
    (a PEM from :func:`tls_certificate`) it answers HTTPS, as a site's TLS front end does (Debian
    bookworm's Orthanc 1.10.1 crashes on its own HTTPS connections)."""

    def __init__(self, upstream: str, fail_from: int = 1, status: int | None = 500, delay: float = 0.0, hook=None, stow: bool = False, tls: Path | None = None) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        proxy = self
        self.upstream, self.fail_from, self.status, self.delay, self.hook = upstream, fail_from, status, delay, hook
        self.instance_requests = 0

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def _forward(self, method: str) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else None
                wado = "/instances/" in self.path and method == "GET"
                if (method == "POST") if stow else wado:
                    proxy.instance_requests += 1
                    if proxy.instance_requests >= proxy.fail_from:
                        if proxy.hook is not None:
                            proxy.hook()
                        if proxy.delay:
                            time.sleep(proxy.delay)
                        elif proxy.status is None:
                            self.connection.shutdown(socket.SHUT_RDWR)
                            return
                        else:
                            self.send_response(proxy.status)
                            self.send_header("Connection", "close")
                            self.send_header("Content-Length", "0")
                            self.end_headers()
                            return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                answer = requests.request(method, proxy.upstream + self.path, headers=headers, data=body, timeout=TIMEOUT)
                self.send_response(answer.status_code)
                for k, v in answer.headers.items():
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"):
                        self.send_header(k, v)
                self.send_header("Connection", "close")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def do_GET(self) -> None:
                self._forward("GET")

            def do_POST(self) -> None:
                self._forward("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:
            import ssl

            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)
