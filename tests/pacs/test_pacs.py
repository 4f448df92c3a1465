"""`clinrelease pacs run` between two real Orthanc servers (clinical and research) over DICOMweb, the
network faults it must survive, and the Orthanc plugin's REST route.

The clinical server holds two studies with planted PHI: a short DICOM video built from a shared clip
(with a CT of the same patient in the same study) and a second CT study. The header-only ``basic``
profile releases them in seconds.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pydicom
import pytest

from _orthanc_helpers import PASSWORD, USER, FaultProxy, Orthanc, require_orthanc, servers_file, tls_certificate
from _release_helpers import deid_data_dir, invoke, make_keys, shared_clips
from clinrelease.errors import EXIT_SERVER
from clinrelease.fixtures import Identity, build_dicom_fixture, carphone_path, planted_dates, planted_strings
from clinrelease.verify.leaks import scan_bytes

ENV = {"TEST_DICOMWEB_PASSWORD": PASSWORD}


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The clinical server's files: study A (video + CT), study B (CT), all carrying ``identity``."""
    require_orthanc()
    root = tmp_path_factory.mktemp("pacs-in")
    identity = Identity()
    clips = shared_clips()
    video = build_dicom_fixture(root / "video.dcm", clips[0] if clips else carphone_path(), "h264", 8, identity=identity, burn_text=False)
    ds = pydicom.dcmread(video.path)
    ds.BurnedInAnnotation = "NO"  # nothing drawn into the frames: the header-only profile may release it
    ds.save_as(video.path)
    study_a = str(ds.StudyInstanceUID)
    cts = []
    for n, name in enumerate(("humans/ctbrain1.dcm", "humans/ctbrain1.dcm")):
        ct = pydicom.dcmread(deid_data_dir() / name)
        ct.PatientName, ct.PatientID, ct.PatientBirthDate = identity.patient_name, identity.patient_id, identity.birth_date
        ct.PatientAddress, ct.PatientComments = identity.address, identity.comment
        ct.SOPInstanceUID = ct.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        ct.StudyInstanceUID = study_a if n == 0 else pydicom.uid.generate_uid()
        ct.SeriesInstanceUID = pydicom.uid.generate_uid()
        ct.save_as(root / f"ct{n}.dcm")
        cts.append(root / f"ct{n}.dcm")
    study_b = str(pydicom.dcmread(cts[1]).StudyInstanceUID)
    # the institution's name is searched by its words, and "Clinic" is in the writer's Manufacturer "Acme Clinical Cameras"
    phi = [s for s in planted_strings(identity) if s != identity.institution] + planted_dates(identity)
    original_uids = {str(pydicom.dcmread(p).SOPInstanceUID) for p in [video.path, *cts]} | {study_a, study_b}
    return {"files": [video.path, *cts], "study_a": study_a, "study_b": study_b, "phi": phi, "uids": original_uids}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keys(tmp_path_factory.mktemp("pacs-keys") / "keys")


@pytest.fixture
def servers(tmp_path: Path, inputs: dict):
    """Started clinical (loaded with the inputs) and research servers; both stopped afterwards."""
    clinical, research = Orthanc(tmp_path, "clinical"), Orthanc(tmp_path, "research")
    try:
        clinical.start()
        research.start()
        for path in inputs["files"]:
            clinical.upload(path)
        yield clinical, research
    finally:
        clinical.terminate()
        research.terminate()
        clinical.stop()
        research.stop()


def pacs_args(cfg: Path, out: Path, keys: Path, *studies: str, source: str = "clinical", target: str = "research") -> list[str]:
    args = ["pacs", "run", "-p", "basic", "--from", source, "--to", target, "--servers", str(cfg), "-o", str(out), "-k", str(keys), "--json"]
    for uid in studies:
        args += ["--study", uid]
    return args


def released_files(out: Path) -> dict[str, bytes]:
    """SOP Instance UID -> released file, from the local release folder."""
    return {str(pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID): p.read_bytes() for p in (out / "data").rglob("*.dcm")}


def assert_clean(files: dict[str, bytes], inputs: dict, keys: Path, folder: Path) -> None:
    """Each file read back from a server: the project's leak scan over its bytes, its residual-PHI check
    against the original it was released from (found by its keyed SOP Instance UID), no original UID."""
    from clinrelease.crypto.keys import load_keys
    from clinrelease.dicom.deid import Deidentifier
    from clinrelease.dicom.keyed import keyed_uid
    from clinrelease.dicom.residual import residual_phi
    from clinrelease.profiles import load_profile

    key = load_keys(keys, need_signing=False).release_key
    originals = {keyed_uid(key, str(pydicom.dcmread(p).SOPInstanceUID)): pydicom.dcmread(p) for p in inputs["files"]}
    deid = Deidentifier(load_profile("basic").deid.options, key)
    for sop, data in files.items():
        path = folder / f"{sop}.dcm"
        path.write_bytes(data)
        assert scan_bytes(path, inputs["phi"], encoder_text=False) == [], sop
        back, original = pydicom.dcmread(path), originals[sop]
        assert residual_phi(original, back, deid.deidentify(original)) == [], sop
        assert not inputs["uids"] & {str(back.SOPInstanceUID), str(back.StudyInstanceUID), str(back.SeriesInstanceUID)}


def test_release_over_dicomweb_pushes_exactly_the_released_instances(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    """Both studies come in over WADO-RS, the signed release verifies, the research server then holds
    exactly the released instances (clean when read back), the clinical server is unchanged, and a
    re-run pushes nothing twice."""
    clinical, research = servers
    before = clinical.state()
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    out = tmp_path / "release"
    result = invoke(pacs_args(cfg, out, keys, inputs["study_a"], inputs["study_b"]), env=ENV)
    doc = json.loads(result.output)
    assert result.exit_code == 0, result.output
    assert doc["counts"]["released"] == 3 and doc["push"]["pushed"] == 3 and doc["push"]["already_there"] == 0
    assert PASSWORD not in result.output
    assert not (tmp_path / "release.pacs").exists()  # staged originals removed after a complete run
    verify = invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")])
    assert verify.exit_code == 0, verify.output

    pushed = research.files()
    assert set(pushed) == set(released_files(out)) and len(pushed) == 3
    assert pushed == released_files(out)  # byte for byte what the signed manifest lists
    readback = tmp_path / "readback"
    readback.mkdir()
    assert_clean(pushed, inputs, keys, readback)
    assert clinical.state() == before

    again = invoke(pacs_args(cfg, out, keys, inputs["study_a"], inputs["study_b"]), env=ENV)
    assert again.exit_code == 0, again.output
    assert json.loads(again.output)["push"] == {**doc["push"], "pushed": 0, "already_there": 3, "studies": [
        {**s, "pushed": 0} for s in doc["push"]["studies"]]}  # fmt: skip
    assert research.instances() == sorted(research.instances()) and len(research.instances()) == 3


def test_query_by_patient_id_selects_the_patients_studies(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    clinical, research = servers
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    args = pacs_args(cfg, tmp_path / "release", keys) + ["--query", f"PatientID={Identity().patient_id}"]
    result = invoke(args, env=ENV)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert {s["study_uid"] for s in doc["studies"]} == {inputs["study_a"], inputs["study_b"]}
    assert len(research.instances()) == 3


def test_source_down_names_the_server_and_the_study(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    clinical, research = servers
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    clinical.stop()
    result = invoke(pacs_args(cfg, tmp_path / "release", keys, inputs["study_a"]), env=ENV)
    assert result.exit_code == EXIT_SERVER
    assert f"clinical ({clinical.dicomweb})" in result.output and inputs["study_a"] in result.output
    assert "connection failed" in result.output and "Traceback" not in result.output
    assert research.instances() == []


@pytest.mark.parametrize("status, words", [(401, "refused the credentials (401"), (403, "may not do this (403")])
def test_refused_credentials_name_the_server_and_push_nothing(servers, inputs: dict, keys: Path, tmp_path: Path, status: int, words: str) -> None:
    clinical, research = servers
    with FaultProxy(clinical.url, fail_from=1, status=status) as proxy:
        cfg = servers_file(tmp_path, clinical=proxy.url + "/dicom-web", research=research)
        result = invoke(pacs_args(cfg, tmp_path / "release", keys, inputs["study_a"]), env=ENV)
    assert result.exit_code == EXIT_SERVER and words in result.output and inputs["study_a"] in result.output, result.output
    assert research.instances() == []


def test_wrong_password_for_the_target_releases_locally_then_rerun_pushes_once(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    clinical, research = servers
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    out = tmp_path / "release"
    bad = invoke(pacs_args(cfg, out, keys, inputs["study_b"]), env={"TEST_DICOMWEB_PASSWORD": "wrong-password"})
    # the source refuses the same wrong password first: nothing staged, nothing released, nothing pushed
    assert bad.exit_code == EXIT_SERVER and "clinical" in bad.output and "401" in bad.output and "wrong-password" not in bad.output
    assert research.instances() == []
    result = invoke(pacs_args(cfg, out, keys, inputs["study_b"]), env=ENV)
    assert result.exit_code == 0 and json.loads(result.output)["push"]["pushed"] == 1


def test_a_500_mid_study_stages_none_of_it_and_a_rerun_completes_it(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    clinical, research = servers
    out = tmp_path / "release"
    with FaultProxy(clinical.url, fail_from=2, status=500) as proxy:
        cfg = servers_file(tmp_path, clinical=proxy.url + "/dicom-web", research=research)
        result = invoke(pacs_args(cfg, out, keys, inputs["study_a"]), env=ENV)
    assert result.exit_code == EXIT_SERVER, result.output
    assert "answered 500" in result.output and inputs["study_a"] in result.output and "instance 2 of 2" in result.output
    assert research.instances() == [] and not (out / "data").exists()
    assert not list((tmp_path / "release.pacs").rglob("*.dcm"))  # no partial study left staged
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    again = invoke(pacs_args(cfg, out, keys, inputs["study_a"]), env=ENV)
    assert again.exit_code == 0 and json.loads(again.output)["push"]["pushed"] == 2, again.output


def test_server_killed_mid_study_pushes_nothing_and_resumes_after_restart(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    clinical, research = servers
    out = tmp_path / "release"
    with FaultProxy(clinical.url, fail_from=2, status=None, hook=clinical.kill) as proxy:
        cfg = servers_file(tmp_path, clinical=proxy.url + "/dicom-web", research=research)
        result = invoke(pacs_args(cfg, out, keys, inputs["study_b"], inputs["study_a"]), env=ENV)
    assert result.exit_code == EXIT_SERVER and "dropped" in result.output and inputs["study_a"] in result.output, result.output
    assert research.instances() == []
    staged = list((tmp_path / "release.pacs" / "studies").iterdir())
    assert len(staged) == 1  # study B had arrived whole; study A not at all
    clinical.start()  # same storage: the server comes back
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    again = invoke(pacs_args(cfg, out, keys, inputs["study_b"], inputs["study_a"]), env=ENV)
    doc = json.loads(again.output)
    assert again.exit_code == 0 and [s["fetched"] for s in doc["studies"]] == [False, True] and doc["push"]["pushed"] == 3


def test_slow_server_times_out_with_the_server_and_study_named(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    clinical, research = servers
    with FaultProxy(clinical.url, fail_from=1, delay=3) as proxy:
        cfg = servers_file(tmp_path, timeout_s=1, clinical=proxy.url + "/dicom-web", research=research)
        started = time.monotonic()
        result = invoke(pacs_args(cfg, tmp_path / "release", keys, inputs["study_b"]), env=ENV)
        took = time.monotonic() - started
    assert result.exit_code == EXIT_SERVER and "no answer within 1 s" in result.output and inputs["study_b"] in result.output, result.output
    assert took < 30 and research.instances() == []


def test_target_down_releases_locally_and_a_rerun_pushes_everything_once(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    clinical, research = servers
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    out = tmp_path / "release"
    research.stop()
    result = invoke(pacs_args(cfg, out, keys, inputs["study_b"]), env=ENV)
    assert result.exit_code == EXIT_SERVER and f"research ({research.dicomweb})" in result.output and "released study" in result.output, result.output
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0  # the local release is whole
    research.start()
    again = invoke(pacs_args(cfg, out, keys, inputs["study_b"]), env=ENV)
    assert again.exit_code == 0 and json.loads(again.output)["push"]["pushed"] == 1 and len(research.instances()) == 1


def test_target_killed_mid_push_holds_whole_studies_only_and_a_rerun_completes(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    """Each study goes in one STOW request: the target dies as the second study is sent and holds the
    first study whole and nothing of the second; the re-run sends only the second."""
    clinical, research = servers
    out = tmp_path / "release"
    with FaultProxy(research.url, fail_from=2, status=None, hook=research.kill, stow=True) as proxy:
        cfg = servers_file(tmp_path, clinical=clinical, research=proxy.url + "/dicom-web")
        result = invoke(pacs_args(cfg, out, keys, inputs["study_a"], inputs["study_b"]), env=ENV)
    assert result.exit_code == EXIT_SERVER and "re-run to complete it" in result.output, result.output
    research.start()
    first = {s for s, data in research.files().items()}
    assert len(first) in (1, 2)  # study B (one CT) or study A (video + CT), whichever sorts first, and nothing of the other
    cfg = servers_file(tmp_path, clinical=clinical, research=research)
    again = invoke(pacs_args(cfg, out, keys, inputs["study_a"], inputs["study_b"]), env=ENV)
    doc = json.loads(again.output)
    assert again.exit_code == 0 and doc["push"]["pushed"] == 3 - len(first) and doc["push"]["already_there"] == len(first)
    assert set(research.files()) == set(released_files(out))


def test_tls_is_verified_by_default_and_the_sites_ca_is_accepted(servers, inputs: dict, keys: Path, tmp_path: Path) -> None:
    """An HTTPS server whose certificate no public CA signed is refused until the servers file names the
    site's CA bundle; then the release goes through over HTTPS."""
    clinical, research = servers
    pem = tls_certificate(tmp_path)
    out = tmp_path / "release"
    with FaultProxy(clinical.url, fail_from=10**6, tls=pem) as proxy:
        refused = invoke(pacs_args(servers_file(tmp_path, clinical=proxy.url + "/dicom-web", research=research), out, keys, inputs["study_b"]), env=ENV)
        assert refused.exit_code == EXIT_SERVER and "TLS verification failed (self-signed certificate)" in refused.output and "ca_bundle" in refused.output, refused.output
        cfg = servers_file(tmp_path, ca_bundle=pem, clinical=proxy.url + "/dicom-web", research=research)
        result = invoke(pacs_args(cfg, out, keys, inputs["study_b"]), env=ENV)
    assert result.exit_code == 0 and json.loads(result.output)["push"]["pushed"] == 1, result.output


def test_credentials_are_never_taken_from_the_command_line(keys: Path, tmp_path: Path) -> None:
    result = invoke(["pacs", "run", "-p", "basic", "--from", f"http://{USER}:{PASSWORD}@127.0.0.1:1/dicom-web",
                     "--study", "1.2.3", "-o", str(tmp_path / "r"), "-k", str(keys)])  # fmt: skip
    assert result.exit_code == 2 and "never on the command line" in result.output and PASSWORD not in result.output


def test_a_password_in_a_readable_servers_file_is_refused(keys: Path, tmp_path: Path) -> None:
    cfg = tmp_path / "servers.yaml"
    cfg.write_text(f"servers:\n  clinical:\n    url: http://127.0.0.1:1/dicom-web\n    username: {USER}\n    password: {PASSWORD}\n")
    cfg.chmod(0o644)
    result = invoke(["pacs", "run", "-p", "basic", "--from", "clinical", "--servers", str(cfg), "--study", "1.2.3",
                     "-o", str(tmp_path / "r"), "-k", str(keys)])  # fmt: skip
    assert result.exit_code == 2 and f"chmod 600 {cfg}" in result.output and PASSWORD not in result.output


@pytest.mark.parametrize("args, words", [
    ([], "name the studies to release"),
    (["--query", "Foo=1"], "Foo is not one of PatientID"),
    (["--study", "1.2.abc"], "is not a DICOM UID"),
])  # fmt: skip
def test_study_selection_errors_are_usage_errors(keys: Path, tmp_path: Path, args: list[str], words: str) -> None:
    result = invoke(["pacs", "run", "-p", "basic", "--from", "http://127.0.0.1:1/dicom-web", "-o", str(tmp_path / "r"), "-k", str(keys), *args])
    assert result.exit_code == 2 and words in result.output, result.output


def test_orthanc_plugin_route_releases_studies_behind_orthancs_auth(inputs: dict, keys: Path, tmp_path: Path) -> None:
    """The plugin's REST route starts a worker that releases the chosen study from this Orthanc to the
    research server; progress and the QA report are read through the routes; no credentials, no route."""
    import os
    import sys

    import requests

    require_orthanc(python=True)
    script = tmp_path / "plugin" / "clinrelease_plugin.py"
    installed = invoke(["pacs", "plugin", "--install", str(script.parent)])
    assert installed.exit_code == 0 and script.is_file()
    research = Orthanc(tmp_path, "research")
    clinical = None
    try:
        research.start()
        clinical = Orthanc(tmp_path, "clinical", python_script=script)
        cfg = servers_file(tmp_path, clinical=clinical, research=research)
        clinical.extra = {"ClinRelease": {
            "Command": [sys.executable, "-m", "clinrelease"], "Servers": str(cfg), "Source": "clinical", "Target": "research",
            "Keys": str(keys), "Releases": str(tmp_path / "releases"), "Profiles": ["basic"]}}  # fmt: skip
        (tmp_path / "releases").mkdir()
        root = str(Path(__file__).resolve().parents[2])
        clinical.env = {**os.environ, **ENV, "PYTHONPATH": root}
        clinical.start()
        for path in inputs["files"]:
            clinical.upload(path)
        body = json.dumps({"studies": [inputs["study_b"]], "profile": "basic"})
        anonymous = requests.post(clinical.url + "/clinrelease/releases", data=body, timeout=10)
        assert anonymous.status_code == 401
        refused = clinical.post("/clinrelease/releases", data=json.dumps({"studies": ["x"], "profile": "basic"}))
        assert refused.status_code == 400 and "Study Instance UIDs" in refused.text
        job = clinical.post("/clinrelease/releases", data=body).json()["id"]
        deadline = time.monotonic() + 120
        while (state := clinical.get(f"/clinrelease/releases/{job}").json())["status"] == "running":
            assert time.monotonic() < deadline, state
            time.sleep(0.5)
        assert state["status"] == "released" and state["exit_code"] == 0, (state, (tmp_path / "releases" / job / "worker.log").read_text())
        assert state["progress"]["stage"] == "done" and state["push"]["pushed"] == 1
        report = clinical.get(f"/clinrelease/releases/{job}/report")
        assert report.status_code == 200 and "<html" in report.text.lower()
        assert clinical.get(f"/clinrelease/releases/{job}/summary").json()["counts"]["released"] == 1
        out = tmp_path / "releases" / job / "release"
        pushed = research.files()
        assert pushed == released_files(out)
        (tmp_path / "readback").mkdir()
        assert_clean(pushed, inputs, keys, tmp_path / "readback")
        verify = invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")])
        assert verify.exit_code == 0, verify.output
    finally:
        if clinical is not None:
            clinical.stop()
        research.stop()
    shutil.rmtree(tmp_path / "releases", ignore_errors=True)
