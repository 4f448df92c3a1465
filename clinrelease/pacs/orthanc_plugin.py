"""clinrelease inside Orthanc: an orthanc-python plugin script (stand-alone: standard library only).

Routes (Orthanc's own authentication guards them, as every REST route):

* ``POST /clinrelease/releases`` with ``{"studies": [StudyInstanceUID, ...], "profile": NAME}``:
  start a release; answers ``{"id": ..., "status": "running"}``.
* ``GET /clinrelease/releases``: every release started here and its status.
* ``GET /clinrelease/releases/ID``: status (running, released, quarantined, failed), exit code,
  progress (stage, done, total) and, when it failed, the error.
* ``GET /clinrelease/releases/ID/report``: the QA report (HTML); ``.../summary``: summary.json.

The work never runs in Orthanc's process: each release is ``clinrelease pacs run`` in a worker
subprocess that fetches the studies from this Orthanc over DICOMweb and pushes the released
instances to the configured target. Configuration, in Orthanc's configuration file::

    "PythonScript": "/etc/orthanc/clinrelease_plugin.py",
    "ClinRelease": {
      "Command": ["/opt/clinrelease/.venv/bin/clinrelease"],
      "Servers": "/etc/clinrelease/servers.yaml",   // credentials for Source and Target
      "Source": "clinical",                         // this Orthanc's DICOMweb, as named there
      "Target": "research",
      "Keys": "/etc/clinrelease/keys",
      "Releases": "/var/lib/clinrelease/releases",  // report, signed audit log, data per release
      "Profiles": ["pd_gait", "basic"]              // the profiles a caller may choose
    }
"""

import json
import os
import re
import subprocess
import threading
import uuid

import orthanc

_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_JOB = r"([0-9a-f]{32})"
_LOCK = threading.Lock()
_JOBS = {}  # id -> subprocess.Popen, for the releases started by this Orthanc process

CONFIG = json.loads(orthanc.GetConfiguration()).get("ClinRelease", {})


def _setting(name):
    if name not in CONFIG:
        raise KeyError("ClinRelease.%s is not set in Orthanc's configuration" % name)
    return CONFIG[name]


def _answer(output, obj, status=200):
    body = json.dumps(obj, indent=2).encode("utf-8")
    if status == 200:
        output.AnswerBuffer(body, "application/json")
    else:
        output.SendHttpStatus(status, body.decode("utf-8"), len(body))  # orthanc-python 4.0: (status, text, size)


def _job_dir(job):
    return os.path.join(_setting("Releases"), job)


def _read_json(path):
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except (OSError, ValueError):
        return None


def _status(job):
    folder = _job_dir(job)
    if not os.path.isdir(folder):
        return None
    state = {"id": job, "request": _read_json(os.path.join(folder, "request.json"))}
    exit_file = os.path.join(folder, "exit_code")
    with _LOCK:
        proc = _JOBS.get(job)
    code = None
    if os.path.isfile(exit_file):
        with open(exit_file, encoding="utf-8") as fh:
            code = int(fh.read().strip())
    elif proc is None:
        state.update(status="failed", error="the worker stopped without an exit code (Orthanc restarted?)")
        return state
    names = {None: "running", 0: "released", 1: "quarantined"}
    state["status"] = names.get(code, "failed")
    state["exit_code"] = code
    state["progress"] = _read_json(os.path.join(folder, "progress.json"))
    if code not in (None, 0, 1):
        state["error"] = _last_line(os.path.join(folder, "worker.log"))
    result = _read_json(os.path.join(folder, "result.json"))
    if result:
        state.update(counts=result.get("counts"), push=result.get("push"), studies=result.get("studies"))
    return state


def _last_line(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            lines = [line.strip() for line in fh if line.strip()]
    except OSError:
        return None
    return lines[-1] if lines else None


def _start(request):
    try:
        body = json.loads(request["body"] or b"{}")
    except ValueError:
        return 400, {"error": "the body must be JSON: {\"studies\": [UID, ...], \"profile\": NAME}"}
    studies = body.get("studies") if isinstance(body, dict) else None
    profile = body.get("profile") if isinstance(body, dict) else None
    if not isinstance(studies, list) or not studies or not all(isinstance(s, str) and _UID.match(s) for s in studies):
        return 400, {"error": "studies: a non-empty list of Study Instance UIDs"}
    allowed = _setting("Profiles")
    if profile not in allowed:
        return 400, {"error": "profile: one of %s" % ", ".join(allowed)}
    job = uuid.uuid4().hex
    folder = _job_dir(job)
    os.makedirs(folder, mode=0o700)
    with open(os.path.join(folder, "request.json"), "w", encoding="utf-8") as fh:
        json.dump({"studies": studies, "profile": profile}, fh)
    command = list(_setting("Command")) + [
        "pacs", "run", "--json", "--profile", profile,
        "--from", _setting("Source"), "--to", _setting("Target"), "--servers", _setting("Servers"),
        "--keys", _setting("Keys"), "--output", os.path.join(folder, "release"),
        "--progress-file", os.path.join(folder, "progress.json"), "--operator", "orthanc",
    ]  # fmt: skip
    for uid in studies:
        command += ["--study", uid]
    result = open(os.path.join(folder, "result.json"), "wb")
    log = open(os.path.join(folder, "worker.log"), "wb")
    proc = subprocess.Popen(command, stdout=result, stderr=log, stdin=subprocess.DEVNULL, cwd=folder, start_new_session=True)
    result.close()
    log.close()
    with _LOCK:
        _JOBS[job] = proc
    threading.Thread(target=_wait, args=(job, proc), daemon=True).start()
    orthanc.LogWarning("clinrelease: release %s of %d studies started (profile %s)" % (job, len(studies), profile))
    return 200, {"id": job, "status": "running"}


def _wait(job, proc):
    code = proc.wait()
    path = os.path.join(_job_dir(job), "exit_code")
    with open(path + ".tmp", "w", encoding="utf-8") as fh:
        fh.write("%d\n" % code)
    os.replace(path + ".tmp", path)
    orthanc.LogWarning("clinrelease: release %s ended with exit code %d" % (job, code))


def _configured(route):
    """A route that answers a clear 500 when the ClinRelease section lacks a setting."""

    def guarded(output, uri, **request):
        try:
            route(output, uri, **request)
        except KeyError as exc:
            orthanc.LogError("clinrelease: %s" % exc.args[0])
            _answer(output, {"error": exc.args[0]}, 500)

    return guarded


@_configured
def on_releases(output, uri, **request):
    if request["method"] == "POST":
        status, obj = _start(request)
        _answer(output, obj, status)
    elif request["method"] == "GET":
        root = _setting("Releases")
        jobs = sorted(name for name in os.listdir(root) if re.fullmatch(_JOB, name)) if os.path.isdir(root) else []
        _answer(output, [_status(job) for job in jobs])
    else:
        output.SendMethodNotAllowed("GET,POST")


@_configured
def on_release(output, uri, **request):
    if request["method"] != "GET":
        output.SendMethodNotAllowed("GET")
        return
    state = _status(request["groups"][0])
    _answer(output, state or {"error": "no such release"}, 200 if state else 404)


@_configured
def on_report(output, uri, **request):
    if request["method"] != "GET":
        output.SendMethodNotAllowed("GET")
        return
    job, kind = request["groups"]
    name, mime = {"report": ("index.html", "text/html"), "summary": ("summary.json", "application/json")}[kind]
    path = os.path.join(_job_dir(job), "release", "report", name)
    if not os.path.isfile(path):
        _answer(output, {"error": "no report yet (the release is running or failed)"}, 404)
        return
    with open(path, "rb") as fh:
        output.AnswerBuffer(fh.read(), mime)


orthanc.RegisterRestCallback("/clinrelease/releases", on_releases)
orthanc.RegisterRestCallback("/clinrelease/releases/" + _JOB, on_release)
orthanc.RegisterRestCallback("/clinrelease/releases/" + _JOB + "/(report|summary)", on_report)
