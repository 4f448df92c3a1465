"""`clinrelease run` / `merge` over a mixed real input with the header-only `basic` profile.

One reference release is made per module; the other runs (2 workers, Dask, shards + merge, escrow)
must produce byte-identical data files with the same key.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from _release_helpers import (
    PHI_NAMED_MP4,
    ReleaseInput,
    build_release_input,
    data_digests,
    invoke,
    json_result,
    make_keys,
    manifest_data_lines,
    records,
    released_header,
    summary,
)
from clinrelease.dicom.deid import BURNED_IN_REASON


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> ReleaseInput:
    return build_release_input(tmp_path_factory.mktemp("release-input"))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_keys(tmp_path_factory.mktemp("keys") / "keys")


@pytest.fixture(scope="module")
def reference(built: ReleaseInput, keys: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("ref") / "release"
    result = invoke(built.run_args("basic", out, keys, "--json"))
    assert result.exit_code == 1, result.output  # the burned-in DICOM video is quarantined
    return out, json_result(result)


def _by_input(items: list[dict]) -> dict[str, dict]:
    return {i["input"]: i for i in items}


def test_layout_statuses_and_exit_code(built: ReleaseInput, reference: tuple[Path, dict]) -> None:
    out, doc = reference
    items = _by_input(doc["items"])
    assert doc["exit_code"] == 1 and doc["finalized"]
    assert items["exam1.dcm"]["status"] == "quarantined"
    assert items["exam1.dcm"]["reasons"] == [BURNED_IN_REASON]
    released = [i for i in doc["items"] if i["status"] == "released"]
    # every MP4 and every deid-data file is released; the sidecar README is no item
    assert len(released) == len(built.mp4s) + len(built.deid_data) == doc["counts"]["released"]
    assert not any(i["input"].endswith(".txt") for i in doc["items"])
    for name in ("report/index.html", "report/summary.json", "clinical/clinical.csv", "manifest-sha256.txt",
                 "audit/log.jsonl", "audit/statement.dsse.json"):  # fmt: skip
        assert (out / name).is_file(), name
    # output paths come from pseudonyms and UIDs, never from input names
    inputs = [p.stem.lower() for p in [built.dicom_video, *built.mp4s, *built.deid_data]]
    for item in released:
        rel = item["output"]
        assert rel.startswith("data/") and (out / rel).is_file()
        assert all(part.startswith(("P", "2.25.")) for part in Path(rel).parts[1:]), rel
        assert not any(stem in rel.lower() for stem in inputs), rel
    assert set(data_digests(out)) == {i["output"] for i in released}


def test_quarantine_folder_holds_reasons_outside_the_release(reference: tuple[Path, dict]) -> None:
    out, _ = reference
    quarantine = out.with_name(out.name + ".quarantine")
    reasons = [json.loads(p.read_text()) for p in quarantine.glob("*/reasons.json")]
    assert [r["input"] for r in reasons] == ["exam1.dcm"]
    assert reasons[0]["status"] == "quarantined" and reasons[0]["reasons"] == [BURNED_IN_REASON]
    assert not any("exam1" in p.name for p in out.rglob("*"))


def test_summary_json_per_item_shape_and_no_input_names(built: ReleaseInput, reference: tuple[Path, dict]) -> None:
    out, _ = reference
    doc = summary(out)
    assert doc["profile"] == "basic" and doc["counts"] == {"released": len(built.mp4s) + len(built.deid_data), "quarantined": 1, "error": 0}
    for item in doc["items"]:
        assert {"item_id", "status", "reasons", "output", "verification"} <= set(item) and "input" not in item
        figures = item["verification"]
        assert set(figures["keypoints"]) >= {"body_ap", "head_ap", "face_nme"}
        assert figures["recognizers"] == {}  # basic checks no faces
    released = [i for i in doc["items"] if i["status"] == "released"]
    assert all(i["verification"]["leaks"] == 0 and i["verification"]["header_residual"] == 0 for i in released)
    # released reports name items by their keyed id, never by input name (the site's copy does)
    text = (out / "report" / "summary.json").read_text() + (out / "report" / "index.html").read_text()
    assert "whitmore" not in text.lower() and "ctbrain1" not in text and "exam1" not in text
    site = out.with_name(out.name + ".work") / "report" / "index.html"
    assert PHI_NAMED_MP4 in site.read_text() and "deid/humans_ctbrain1.dcm" in site.read_text()


def test_clinical_table_joins_by_pseudonym(built: ReleaseInput, reference: tuple[Path, dict]) -> None:
    out, doc = reference
    with open(out / "clinical" / "clinical.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    # basic drops every other column; the row of MRN-OTHER-0001 matches no video and is withheld
    assert len(rows) == 1 and list(rows[0]) == ["patient_id"]
    assert summary(out)["clinical"]["rows_withheld_no_video"] == 1
    mp4_item = next(i for i in doc["items"] if i["status"] == "released" and "withheld" not in i["input"] and i["input"].endswith(".mp4"))
    released_pid = str(released_header(out, mp4_item["output"]).PatientID)
    assert released_pid != built.identity.patient_id
    assert released_pid in {r["patient_id"] for r in rows}
    assert built.identity.patient_id not in (out / "clinical" / "clinical.csv").read_text()


def test_audit_verify_passes_and_manifest_lists_data(keys: Path, reference: tuple[Path, dict]) -> None:
    out, _ = reference
    listed = {line.split(None, 1)[1] for line in manifest_data_lines(out)}
    assert listed == set(data_digests(out))
    result = invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")])
    assert result.exit_code == 0, result.output


def test_rerun_resumes_every_item_and_changes_nothing(built: ReleaseInput, keys: Path, reference: tuple[Path, dict]) -> None:
    out, first = reference
    before, records_before = data_digests(out), records(out)
    result = invoke(built.run_args("basic", out, keys, "--json"))
    assert result.exit_code == 1
    assert data_digests(out) == before
    # no item was redone: every record (with its timing) is the first run's
    assert records(out) == records_before
    assert json_result(result)["counts"] == first["counts"]
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0


def test_all_released_exits_0_and_plain_output(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    out = tmp_path / "release"
    args = ["run", "-p", "basic", "-i", str(built.mp4s[0]), "-i", str(built.deid_data[0]), "-o", str(out),
            "-k", str(keys), "--metadata", str(built.metadata)]  # fmt: skip
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert "released 2, quarantined 0, errors 0" in result.output
    assert "QA report:" in result.output


def test_bracketed_file_names_print_literally_in_the_table_and_quarantine_line(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    # Rich markup would read "[bold]" as a style and print "scan.dcm"
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(built.deid_data[0], folder / "scan[bold].dcm")
    shutil.copyfile(built.dicom_video, folder / "exam[red]1.dcm")  # burned-in annotation: quarantined by basic
    out = tmp_path / ("release-" + "r" * 90)
    result = invoke(["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys)])
    assert result.exit_code == 1, result.output
    assert "scan[bold].dcm" in result.stdout and "exam[red]1.dcm" in result.stdout
    assert "quarantined: exam[red]1.dcm: " in result.stderr
    # a long path stays on one line, to be copied
    assert f"release: {out}" in result.stdout.splitlines()


def test_dask_executor_without_the_extra_names_the_extra(built: ReleaseInput, keys: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a None entry makes "import distributed" fail as it does where the extra is not installed
    monkeypatch.setitem(sys.modules, "distributed", None)
    result = invoke(["run", "-p", "basic", "-i", str(built.deid_data[0]), "-o", str(tmp_path / "r"), "-k", str(keys), "--executor", "dask"])
    assert result.exit_code == 2, result.output
    assert "pip install -e '.[dask]'" in result.stderr


def test_audio_is_never_released_and_the_report_says_so(keys: Path, tmp_path: Path) -> None:
    """A voice identifies a patient: sound beside the pictures, in a plain MP4 or in an MP4 kept as DICOM
    pixel data, is left behind even by the header-only profile, which otherwise keeps pixel data as is."""
    from clinrelease.dicom.video import open_video
    from clinrelease.fixtures import Identity, build_dicom_fixture, build_mp4_fixture, carphone_path

    folder = tmp_path / "in"
    folder.mkdir()
    identity = Identity()
    build_mp4_fixture(folder / "visit.mp4", carphone_path(), 12, identity=identity, burn_text=False, audio=True)
    exam = build_dicom_fixture(folder / "exam.dcm", carphone_path(), "h264-mp4", 12, identity=identity, burn_text=False, audio=True).path
    assert open_video(folder / "visit.mp4").info.audio_streams == 1 and open_video(exam).info.audio_streams == 1
    ds = pydicom.dcmread(exam)
    ds.BurnedInAnnotation = "NO"  # no captions drawn: basic may release it
    ds.save_as(exam)
    _write_voice_recording(folder / "voice.dcm")
    meta = tmp_path / "meta.csv"
    meta.write_text(f"file,patient_id,patient_name\nvisit.mp4,{identity.patient_id},{identity.patient_name}\n")
    out = tmp_path / "release"
    result = invoke(["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys), "--metadata", str(meta), "--json"])
    doc = summary(out)
    names = {r["item_id"]: r["input"] for r in records(out)}  # the release names items by keyed id only
    items = {names[i["item_id"]]: i for i in doc["items"]}
    assert [items[n]["verification"]["audio_streams_dropped"] for n in ("exam.dcm", "visit.mp4")] == [1, 1], result.output
    assert items["voice.dcm"]["status"] == "quarantined" and items["voice.dcm"]["output"] is None
    assert items["voice.dcm"]["reasons"] == ["audio is never released: the file is a Basic Voice Audio Waveform object"]
    assert doc["audio"] == "never released: only the pictures are re-encoded and audio objects are quarantined; 3 input(s) had sound"
    assert "<th>Audio</th><td>never released" in (out / "report" / "index.html").read_text()
    released = [i for i in doc["items"] if i["status"] == "released"]
    assert len(released) == 2, [i["reasons"] for i in doc["items"]]
    for item in released:
        assert open_video(out / item["output"]).info.audio_streams == 0


def _write_voice_recording(path: Path) -> None:
    """A DICOM Basic Voice Audio Waveform object: a dictated note, 0.1 s of 8 kHz sound."""
    import numpy as np
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.9.4.1", generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.PatientName, ds.PatientID, ds.Modality = "Whitmore^Eleanor", "MRN4815162342", "AU"
    wave = Dataset()
    wave.WaveformOriginality, wave.NumberOfWaveformChannels, wave.NumberOfWaveformSamples = "ORIGINAL", 1, 800
    wave.SamplingFrequency, wave.WaveformBitsAllocated, wave.WaveformSampleInterpretation = 8000, 16, "SS"
    wave.WaveformData = (np.sin(np.arange(800) / 3) * 1000).astype("<i2").tobytes()
    ds.WaveformSequence = [wave]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    ds.save_as(path, enforce_file_format=True)


def test_same_key_same_release_with_two_workers(built: ReleaseInput, keys: Path, reference: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "release"
    result = invoke(built.run_args("basic", out, keys, "--workers", "2", "--json"))
    assert result.exit_code == 1
    assert data_digests(out) == data_digests(reference[0])
    assert manifest_data_lines(out) == manifest_data_lines(reference[0])


def test_dask_local_cluster_gives_the_same_release(built: ReleaseInput, keys: Path, reference: tuple[Path, dict], tmp_path: Path) -> None:
    pytest.importorskip("distributed", reason="the dask extra is not installed")
    out = tmp_path / "release"
    result = invoke(built.run_args("basic", out, keys, "--executor", "dask", "--workers", "2", "--json"))
    assert result.exit_code == 1, result.output
    assert data_digests(out) == data_digests(reference[0])


def test_shards_then_merge_give_the_same_verifiable_release(built: ReleaseInput, keys: Path, reference: tuple[Path, dict], tmp_path: Path) -> None:
    out = tmp_path / "release"
    # shard workers hold only the release key: the signing key stays with the merge step
    worker_keys = tmp_path / "worker-keys"
    worker_keys.mkdir()
    for name in ("release.key", "signing.pub"):
        shutil.copy2(keys / name, worker_keys / name)
    for shard in ("0/2", "1/2"):
        result = invoke(built.run_args("basic", out, worker_keys, "--shard", shard, "--json"))
        assert result.exit_code == 1 or result.exit_code == 0, result.output
        assert json_result(result)["finalized"] is False
    assert not (out / "manifest-sha256.txt").exists()
    merged = invoke(["merge", str(out), "--keys", str(keys), "--json"])
    assert merged.exit_code == 1, merged.output
    assert json_result(merged)["counts"] == json_result(invoke(["merge", str(reference[0]), "--keys", str(keys), "--json"]))["counts"]
    assert data_digests(out) == data_digests(reference[0])
    verified = invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")])
    assert verified.exit_code == 0, verified.output


def test_merge_without_a_run_is_a_usage_error(keys: Path, tmp_path: Path) -> None:
    result = invoke(["merge", str(tmp_path / "nothing"), "--keys", str(keys)])
    assert result.exit_code == 2 and "clinrelease run" in result.output


def test_escrow_through_run_then_reverse_restores_the_input(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    env = {"CLINRELEASE_PASSPHRASE": "custodian pass for tests"}
    made = invoke(["keys", "custodian", "alice", str(tmp_path / "custodians")], env=env)
    assert made.exit_code == 0, made.output
    out, vault = tmp_path / "release", tmp_path / "vault"
    args = ["run", "-p", "basic", "-i", str(built.deid_data[0]), "-i", str(built.mp4s[0]), "-o", str(out), "-k", str(keys),
            "--metadata", str(built.metadata), "--escrow-to", str(tmp_path / "custodians" / "alice.pub"),
            "--vault", str(vault), "--json"]  # fmt: skip
    result = invoke(args)
    assert result.exit_code == 0, result.output
    outputs = {Path(i["input"]).name: i["output"] for i in json_result(result)["items"]}
    for original in (built.deid_data[0], built.mp4s[0]):
        restored = tmp_path / f"restored-{original.name}"
        back = invoke(["reverse", str(out / outputs[original.name]), "--vault", str(vault),
                       "--key", str(tmp_path / "custodians" / "alice.key"), "--output", str(restored)], env=env)  # fmt: skip
        assert back.exit_code == 0, back.output
        assert restored.read_bytes() == original.read_bytes()
    # escrow needs a vault
    no_vault = invoke(["run", "-p", "basic", "-i", str(built.deid_data[0]), "-o", str(tmp_path / "r2"), "-k", str(keys),
                       "--escrow-to", str(tmp_path / "custodians" / "alice.pub")])  # fmt: skip
    assert no_vault.exit_code == 2 and "--vault" in no_vault.output


def test_truncated_input_is_an_item_error_exit_3_and_the_rest_released(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    data = built.dicom_video.read_bytes()
    (folder / "cut_video.dcm").write_bytes(data[: len(data) // 2])
    shutil.copyfile(built.deid_data[0], folder / "fine.dcm")  # a CT: header-only under pd_gait
    out = tmp_path / "release"
    result = invoke(["run", "-p", "pd_gait", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    assert result.exit_code == 3, result.output
    items = _by_input(json_result(result)["items"])
    assert items["cut_video.dcm"]["status"] == "error"
    assert "truncated" in items["cut_video.dcm"]["reasons"][0]
    assert items["fine.dcm"]["status"] == "released"  # one bad file does not stop the others
    assert set(data_digests(out)) == {items["fine.dcm"]["output"]}
    # without --json the message names the file
    again = invoke(["run", "-p", "pd_gait", "-i", str(folder), "-o", str(tmp_path / "r2"), "-k", str(keys)])
    assert again.exit_code == 3 and "cut_video.dcm" in again.output and "truncated" in again.output


def test_duplicate_sop_instance_is_quarantined_not_overwritten(keys: Path, tmp_path: Path) -> None:
    from _release_helpers import deid_data_dir

    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("ctbrain1.dcm", "ctbrain2.dcm"):  # deid-data: two files, one SOP Instance UID
        shutil.copyfile(deid_data_dir() / "humans" / name, folder / name)
    out = tmp_path / "release"
    result = invoke(["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    assert result.exit_code == 1
    items = _by_input(json_result(result)["items"])
    assert items["ctbrain1.dcm"]["status"] == "released"
    assert items["ctbrain2.dcm"]["status"] == "quarantined" and "duplicate" in items["ctbrain2.dcm"]["reasons"][0]
    released = pydicom.dcmread(out / items["ctbrain1.dcm"]["output"])
    original = pydicom.dcmread(folder / "ctbrain1.dcm")
    assert released.PixelData == original.PixelData
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0


def test_a_small_object_is_read_once_and_a_larger_one_again_for_its_pixels(keys: Path, tmp_path: Path, monkeypatch) -> None:
    from _release_helpers import deid_data_dir
    from clinrelease.dicom import deid, phi_strings, truncation, video
    from clinrelease.release import item as item_stage

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(deid_data_dir() / "humans" / "ctbrain1.dcm", folder / "ct.dcm")
    reads: list[bool] = []
    real = truncation.read_checked

    def counted(handle, path, *, stop_before_pixels):
        if Path(path).name == "ct.dcm":
            reads.append(stop_before_pixels)
        return real(handle, path, stop_before_pixels=stop_before_pixels)

    monkeypatch.setattr(truncation, "read_checked", counted)
    monkeypatch.setattr(video, "read_checked", counted)
    searches: list[int] = []
    real_sources = deid.identifying_sources

    def counted_sources(ds, **kwargs):
        searches.append(id(ds))
        return real_sources(ds, **kwargs)

    monkeypatch.setattr(deid, "identifying_sources", counted_sources)
    monkeypatch.setattr(phi_strings, "identifying_sources", counted_sources)
    released = {}
    for label, limit in (("small", item_stage.WHOLE_READ_BYTES), ("large", 0)):
        monkeypatch.setattr(item_stage, "WHOLE_READ_BYTES", limit)
        reads.clear()
        searches.clear()
        out = tmp_path / label
        result = invoke(["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
        assert result.exit_code == 0, result.output
        assert reads == ([False] if label == "small" else [True, False])  # the header, then the whole file
        # the identifying strings are searched for once in each dataset read
        assert len(searches) == (1 if label == "small" else 2) and len(set(searches)) == len(searches)
        released[label] = (out / json_result(result)["items"][0]["output"]).read_bytes()
    assert released["small"] == released["large"]
    assert pydicom.dcmread(io.BytesIO(released["small"])).PixelData == pydicom.dcmread(folder / "ct.dcm").PixelData


def test_the_residual_check_and_leak_scan_judge_the_bytes_written(keys: Path, tmp_path: Path, monkeypatch) -> None:
    """A name planted in the encoded bytes, after de-identification, is found by both checks and is
    in the quarantined copy: the checks read the bytes that were written, not another encoding."""
    from _release_helpers import deid_data_dir
    from clinrelease.dicom import deid

    folder = tmp_path / "in"
    folder.mkdir()
    ds = pydicom.dcmread(deid_data_dir() / "humans" / "ctbrain1.dcm")
    ds.PatientName, ds.InstitutionName = "QUILLFEATHER^ZENOBIA", "General Hospital"
    ds.save_as(folder / "ct.dcm")
    real = deid.encode_deidentified

    def planted(dataset) -> bytes:
        data = real(dataset)
        assert b"DEIDENTIFIED" in data  # the Institution Name's dummy
        return data.replace(b"DEIDENTIFIED", b"QUILLFEATHER", 1)

    monkeypatch.setattr(deid, "encode_deidentified", planted)
    out = tmp_path / "out"
    result = invoke(["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"])
    assert result.exit_code == 1, result.output
    item = json_result(result)["items"][0]
    assert item["status"] == "quarantined"
    assert any("header" in r.lower() or "residual" in r.lower() for r in item["reasons"]), item["reasons"]
    assert any(r.startswith("PHI leak scan:") for r in item["reasons"]), item["reasons"]
    [quarantined] = out.with_name("out.quarantine").glob("*/anonymized.dcm")
    assert b"QUILLFEATHER" in quarantined.read_bytes()


def test_a_redone_item_clears_only_its_own_stale_staged_output(keys: Path, tmp_path: Path) -> None:
    from _release_helpers import deid_data_dir

    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(deid_data_dir() / "humans" / "ctbrain1.dcm", folder / "ct.dcm")
    out = tmp_path / "out"
    args = ["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"]
    invoke(args)
    [record] = (out.with_name("out.work") / "records").glob("*.json")
    item_id = record.stem
    work = out.with_name("out.work")
    (work / "records" / f"{item_id}.json").unlink()  # the item is redone
    staging = work / "staging"
    (staging / f".{item_id}.dcm.partial").write_bytes(b"cut short")
    (staging / f"{item_id}-frames").mkdir()
    (staging / f"{item_id}-frames" / "0.png").write_bytes(b"x")
    (staging / "0123456789abcdef.dcm").write_bytes(b"another item's")
    result = invoke(args)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in staging.iterdir()) == ["0123456789abcdef.dcm"]


def test_run_without_keys_says_how_to_create_them(built: ReleaseInput, tmp_path: Path) -> None:
    result = invoke(["run", "-p", "basic", "-i", str(built.deid_data[0]), "-o", str(tmp_path / "r"), "-k", str(tmp_path / "nokeys")])
    assert result.exit_code == 2
    assert "clinrelease keys init" in " ".join(result.output.split())
    assert not (tmp_path / "r").exists()


def test_usage_errors_exit_2(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    base = ["run", "-p", "basic", "-i", str(built.deid_data[0]), "-o", str(tmp_path / "r"), "-k", str(keys)]
    for extra, message in ((["--shard", "2/2"], "0 <= i < N"), (["--shard", "x"], "i/N"), (["--executor", "ray"], "dask")):
        result = invoke(base + extra)
        assert result.exit_code == 2 and message in result.output, result.output
    unknown = invoke(["run", "-p", "no_such_profile", "-i", str(built.deid_data[0]), "-o", str(tmp_path / "r"), "-k", str(keys)])
    assert unknown.exit_code == 2 and "no_such_profile" in unknown.output
    inside = invoke(["run", "-p", "basic", "-i", str(built.folder), "-o", str(built.folder / "out"), "-k", str(keys),
                     "--metadata", str(built.metadata)])  # fmt: skip
    assert inside.exit_code == 2 and "overlaps the input" in inside.output
    no_meta = invoke(["run", "-p", "basic", "-i", str(built.mp4s[0]), "-o", str(tmp_path / "r"), "-k", str(keys)])
    assert no_meta.exit_code == 2 and "metadata" in no_meta.output and PHI_NAMED_MP4 in no_meta.output.replace("\n", "")
    assert os.listdir(built.folder)  # inputs untouched


def test_escrowing_patient_models_without_custodians_is_refused_before_any_item_runs(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    profile = tmp_path / "models_escrowed.yaml"
    profile.write_text("name: models_escrowed\nextends: pd_gait\nanonymizer:\n  params: {model_after_run: escrow}\n")
    out = tmp_path / "r"
    result = invoke(["run", "-p", str(profile), "-i", str(built.deid_data[0]), "-o", str(out), "-k", str(keys)])
    assert result.exit_code == 2 and "model_after_run: escrow needs custodians" in result.output, result.output
    assert not out.with_name("r.work").exists()  # refused before the first item, not after the last


def test_kill_9_leaves_no_partial_file_and_rerun_gives_the_same_release(
    built: ReleaseInput, keys: Path, reference: tuple[Path, dict], tmp_path: Path
) -> None:
    out = tmp_path / "release"
    work = out.with_name(out.name + ".work")
    args = built.run_args("basic", out, keys, "--json")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from clinrelease.cli import app; app()", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if any((work / "records").glob("*.json")) or any((work / "staging").glob("*")):
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be interrupted"
    reference_files = data_digests(reference[0])
    # whatever reached OUT is complete: each file is byte-identical to the uninterrupted release's
    partial = data_digests(out) if (out / "data").exists() else {}
    assert len(partial) < len(reference_files)
    assert all(reference_files.get(path) == digest for path, digest in partial.items()), partial
    assert not any(p.name.startswith(".") for p in out.rglob("*")) if out.exists() else True
    assert not (out / "manifest-sha256.txt").exists()

    resumed = invoke(args)
    assert resumed.exit_code == 1, resumed.output
    assert data_digests(out) == reference_files
    assert manifest_data_lines(out) == manifest_data_lines(reference[0])
    assert invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")]).exit_code == 0


def test_released_audit_records_follow_the_published_schema(reference: tuple[Path, dict]) -> None:
    """Every record of a real release validates against audit/record.schema.json (the auditors' contract)."""
    import jsonschema

    out, _ = reference
    schema = json.loads((Path(__file__).resolve().parents[2] / "audit" / "record.schema.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    records = [json.loads(line) for line in (out / "audit" / "log.jsonl").read_text().splitlines() if line.strip()]
    assert {r["type"] for r in records} >= {"release_start", "item", "release_end"}
    for record in records:
        errors = [f"{list(e.path)}: {e.message}" for e in validator.iter_errors(record)]
        assert not errors, (record["type"], errors)


# --------------------------------------------------------------------------------------------------
# hardening (issue 20): the release folder's integrity and the run's failure modes


def _small_input(built: ReleaseInput, folder: Path) -> Path:
    """The three deid-data files of the mixed input (header-only under basic: a release in a second)."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in built.deid_data:
        shutil.copyfile(path, folder / path.name)
    return folder


def _run_basic(folder: Path, out: Path, keys: Path, *extra: str):
    return invoke(["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json", *extra])


def _verifies(out: Path, keys: Path) -> bool:
    result = invoke(["audit", "verify", str(out), "--key", str(keys / "signing.pub")])
    return result.exit_code == 0


def _tree(out: Path) -> dict[str, str]:
    """Every file under OUT with its digest: the whole release as it stands."""
    import hashlib

    return {p.relative_to(out).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(out.rglob("*")) if p.is_file()}


def _log_items(out: Path) -> list[dict]:
    lines = (out / "audit" / "log.jsonl").read_text(encoding="utf-8").splitlines()
    return [r for r in map(json.loads, filter(None, lines)) if r["type"] == "item"]


def test_withdrawal_by_rerun_drops_the_item_from_data_manifest_report_and_signed_log(
    built: ReleaseInput, keys: Path, tmp_path: Path
) -> None:
    folder = _small_input(built, tmp_path / "in")
    out = tmp_path / "release"
    first = _run_basic(folder, out, keys)
    assert first.exit_code == 0, first.output
    withdrawn_id = next(r["item_id"] for r in records(out) if r["input"] == built.deid_data[1].name)
    withdrawn = next(i for i in summary(out)["items"] if i["item_id"] == withdrawn_id)  # released by keyed id only
    assert withdrawn["output"] in data_digests(out)

    (folder / built.deid_data[1].name).unlink()  # the patient withdraws: their file leaves the input
    again = _run_basic(folder, out, keys)
    assert again.exit_code == 0, again.output
    assert {i["input"] for i in json_result(again)["items"]} == {p.name for p in (built.deid_data[0], built.deid_data[2])}
    assert withdrawn["output"] not in data_digests(out) and len(data_digests(out)) == 2
    assert withdrawn["output"] not in (out / "manifest-sha256.txt").read_text()
    assert withdrawn["item_id"] not in {i["item_id"] for i in summary(out)["items"]}
    assert withdrawn["item_id"] not in (out / "report" / "index.html").read_text()
    logged = _log_items(out)
    assert len(logged) == 2 and withdrawn["item_id"] not in {r["item_id"] for r in logged}
    assert _verifies(out, keys)


def test_rerun_with_another_key_folder_is_refused_and_the_release_kept(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    folder = _small_input(built, tmp_path / "in")
    out = tmp_path / "release"
    assert _run_basic(folder, out, keys).exit_code == 0
    before = _tree(out)
    other = make_keys(tmp_path / "other-keys")
    result = _run_basic(folder, out, other)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "another release key" in text and "pseudonyms of two keys" in text and str(out) in text
    assert _tree(out) == before and _verifies(out, keys)
    # merge with the other keys is refused the same way
    merged = invoke(["merge", str(out), "--keys", str(other)])
    assert merged.exit_code == 2 and "another release key" in " ".join(merged.output.split())
    assert _tree(out) == before


def test_clinical_csv_failure_over_a_verified_release_keeps_it_verifiable(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    folder = _small_input(built, tmp_path / "in")
    out = tmp_path / "release"
    assert _run_basic(folder, out, keys, "--clinical", str(built.clinical)).exit_code == 0
    before = _tree(out)
    assert "clinical/clinical.csv" in before and _verifies(out, keys)
    broken = tmp_path / "clinical.csv"
    broken.write_text("visit_date,updrs_part3\n2023-04-11,24\n", encoding="utf-8")  # no patient_id column
    result = _run_basic(folder, out, keys, "--clinical", str(broken))
    assert result.exit_code == 2, result.output
    assert "patient_id" in result.output
    # nothing of the signed release was removed or changed, and no half-built state is left in it
    assert _tree(out) == before and _verifies(out, keys)
    assert not (out.with_name(out.name + ".work") / "next").exists()


def test_two_concurrent_runs_second_refused_first_completes_and_verifies(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    folder = _small_input(built, tmp_path / "in")
    out = tmp_path / "release"
    lock = out.with_name(out.name + ".work") / "release.lock"
    args = ["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys), "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-c", "from clinrelease.cli import app; app()", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if lock.is_file() and f'"pid": {proc.pid}' in lock.read_text():
                break
            time.sleep(0.002)
        assert proc.poll() is None, "the first run finished before it took the lock"
        proc.send_signal(signal.SIGSTOP)  # hold the first run mid-way, so both are at once on any machine
        try:
            second = invoke(args)
        finally:
            proc.send_signal(signal.SIGCONT)
    finally:
        proc.wait(timeout=300)
    assert second.exit_code == 6, second.output
    text = " ".join(second.output.split())
    assert "another run is writing this release" in text and str(lock) in text and f"pid {proc.pid}" in text
    assert proc.returncode == 0  # the first run completed
    assert len(data_digests(out)) == 3 and _verifies(out, keys)
    # its lock file still names the dead first run: the next run takes the lock over
    assert f'"pid": {proc.pid}' in lock.read_text()
    assert invoke(args).exit_code == 0 and _verifies(out, keys)


@pytest.fixture()
def small_disk(tmp_path: Path):
    """A 4 MiB tmpfs (needs root and mount rights): a disk that fills up for real."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root: run the suite as root to test a full disk")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the disk is full."""
    import errno

    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_full_disk_ends_in_exit_5_naming_the_path_and_leaves_the_release_as_it_was(
    built: ReleaseInput, keys: Path, tmp_path: Path, small_disk: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copyfile(built.deid_data[0], folder / built.deid_data[0].name)
    out = small_disk / "release"
    assert _run_basic(folder, out, keys).exit_code == 0
    before = _tree(out)
    for path in built.deid_data[1:]:  # the cookie photographs: 780 KB each, more than is left
        shutil.copyfile(path, folder / path.name)
    filler = small_disk / "filler"
    _fill(filler)
    full = _run_basic(folder, out, keys)
    assert full.exit_code == 5, full.output
    message = " ".join(full.output.split())
    assert "No space left on device" in message and str(small_disk) in message
    assert _tree(out) == before and _verifies(out, keys)
    assert not any(p.name.startswith(".") for p in out.rglob("*"))
    # space again: the same command completes the release, with nothing of the failed run in it
    filler.unlink()
    done = _run_basic(folder, out, keys)
    assert done.exit_code == 0, done.output
    assert len(data_digests(out)) == 3 and _verifies(out, keys)
    assert not any(p.name.startswith(".") or p.name.endswith(".partial") for p in out.rglob("*"))


def test_stray_files_in_the_release_folder_are_refused_never_signed(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    folder = _small_input(built, tmp_path / "in")
    out = tmp_path / "release"
    assert _run_basic(folder, out, keys).exit_code == 0
    (out / "lookup.csv").write_text("pseudonym,mrn\nPX,123456\n", encoding="utf-8")
    (out / "data" / ".x.dcm.partial").write_bytes(b"half")
    before = _tree(out)
    result = _run_basic(folder, out, keys)
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "not part of the release" in text and "lookup.csv" in text and "data/.x.dcm.partial" in text
    assert _tree(out) == before
    assert "lookup.csv" not in (out / "manifest-sha256.txt").read_text()
    (out / "lookup.csv").unlink()
    (out / "data" / ".x.dcm.partial").unlink()
    assert _run_basic(folder, out, keys).exit_code == 0 and _verifies(out, keys)
    # the run itself writes no temporary file into the release folder, nor anything before its merge
    assert set(_tree(out)) == set((out / "manifest-sha256.txt").read_text().split()[1::2]) | {
        "bagit.txt", "manifest-sha256.txt", "tagmanifest-sha256.txt", "audit/log.jsonl", "audit/statement.dsse.json"}  # fmt: skip


def test_truncated_dicom_under_basic_is_reported_as_truncated(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    import io

    import pydicom
    from pydicom.uid import generate_uid

    folder = tmp_path / "in"
    folder.mkdir()

    def cut(name: str, where) -> None:
        """The CT as another object (its own SOP Instance UID: not a duplicate), cut at ``where(ds, data)``."""
        ds = pydicom.dcmread(built.deid_data[0])
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        data = buffer.getvalue()
        placed = pydicom.dcmread(io.BytesIO(data))
        (folder / name).write_bytes(data[: where(placed, data)])

    cuts = {
        "in_file_meta.dcm": lambda ds, data: 160,
        # between two elements: a well-formed header that lost everything from its SOP Instance UID on
        "before_sop_uid.dcm": lambda ds, data: ds["SOPInstanceUID"].file_tell - 8,
        "in_an_element.dcm": lambda ds, data: ds["PatientID"].file_tell + 3,
        "in_pixels.dcm": lambda ds, data: len(data) - 4000,
    }
    for name, where in cuts.items():
        cut(name, where)
    shutil.copyfile(built.deid_data[1], folder / "whole.dcm")
    result = _run_basic(folder, tmp_path / "release", keys)
    assert result.exit_code == 3, result.output
    items = _by_input(json_result(result)["items"])
    assert items["whole.dcm"]["status"] == "released"
    for name in cuts:
        assert items[name]["status"] == "error", (name, items[name])
        assert "truncated" in items[name]["reasons"][0] and "pseudonym" not in items[name]["reasons"][0], items[name]


def test_unreadable_inputs_continue_the_batch_as_item_errors(built: ReleaseInput, keys: Path, tmp_path: Path) -> None:
    folder = _small_input(built, tmp_path / "in")
    (folder / "scan.bin").write_bytes(os.urandom(4096))  # neither DICOM nor a video
    (folder / "Hargreaves_short.dcm").write_bytes(built.deid_data[0].read_bytes()[:100])  # cut before its preamble
    out = tmp_path / "release"
    result = _run_basic(folder, out, keys)
    assert result.exit_code == 3, result.output
    doc = json_result(result)
    assert doc["counts"] == {"released": 3, "quarantined": 0, "error": 2} and doc["finalized"]
    items = _by_input(doc["items"])
    assert items["scan.bin"]["reasons"] == ["input error: neither a DICOM file (no DICM preamble) nor a known video file type"]
    assert "truncated" in items["Hargreaves_short.dcm"]["reasons"][0]
    released = summary(out)
    assert released["counts"]["error"] == 2
    reasons = [r for i in released["items"] for r in i["reasons"]]
    assert not any("hargreaves" in r.lower() for r in reasons)  # the reasons carry no file name
    assert "input error" in (out / "report" / "index.html").read_text()
    assert _verifies(out, keys)
    # the text summary ends by saying how many inputs could not be read
    text = invoke(["run", "-p", "basic", "-i", str(folder), "-o", str(out), "-k", str(keys)])
    assert text.exit_code == 3 and "2 inputs could not be read" in " ".join(text.output.split())
