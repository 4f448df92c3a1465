"""``clinrelease inspect``: video facts and every place a file carries potential PHI; reads only."""

from __future__ import annotations

import hashlib
import json

import pytest
from _video_helpers import PYDICOM_FILES
from typer.testing import CliRunner

from clinrelease.cli import app
from clinrelease.fixtures import Identity, build_dicom_fixture, build_mp4_fixture
from clinrelease.inspect import NOT_IN_TABLE, inspect_file

runner = CliRunner()


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    out = tmp_path_factory.mktemp("inspect")
    return {
        "h264": build_dicom_fixture(out / "h264.dcm", syntax="h264", max_frames=6),
        "h264-mp4": build_dicom_fixture(out / "h264mp4.dcm", syntax="h264-mp4", max_frames=6),
        "mp4": build_mp4_fixture(out / "clip.mp4", max_frames=6),
    }


def _json(path) -> dict:
    result = runner.invoke(app, ["inspect", "--json", str(path)])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_json_keys_and_video_facts(planted):
    data = _json(planted["h264"].path)
    for key in ("sop_class", "transfer_syntax", "frames", "fps", "rows", "columns", "duration_s", "phi"):
        assert key in data
    assert data["sop_class"] == "1.2.840.10008.5.1.4.1.1.77.1.4.1"
    assert data["transfer_syntax"] == "1.2.840.10008.1.2.4.102"
    assert (data["frames"], data["rows"], data["columns"]) == (6, 144, 176)
    assert data["fps"] == pytest.approx(29.97, abs=0.01)
    assert data["duration_s"] == pytest.approx(6 / 29.97, abs=0.001)
    assert data["burned_in_annotation"] == "YES" and data["annex_e_edition"] == "2024b"


def test_phi_lists_header_nested_private_and_flags(planted):
    phi = _json(planted["h264"].path)["phi"]
    by_tag = {(p["where"], p["tag"]): p for p in phi}
    assert by_tag[("header", "(0010,0010)")]["action"] == "Z"  # Patient's Name
    assert by_tag[("header", "(0010,0020)")]["action"] == "Z/D"
    assert by_tag[("header", "(0010,1040)")]["name"] == "Patient's Address"
    assert by_tag[("header", "(0008,0018)")]["action"] == "U"
    assert by_tag[("header", "(0040,0275)[0].(0008,0050)")]["name"] == "Accession Number"  # in a sequence
    deep = "(0040,0275)[0].(0040,0008)[0].(0040,0440)[0].(0040,A160)"  # three sequences deep
    assert by_tag[("header", deep)]["action"] == NOT_IN_TABLE
    csa = by_tag[("private", "(0029,1010)")]
    assert "SIEMENS CSA HEADER" in csa["name"] and csa["action"] == "X" and csa["vr"] == "OB"
    assert ("private", "(0011,1003)[0].(0011,1002)") in by_tag  # private sequence item
    assert by_tag[("pixels", "(0028,0301)")]["action"] == "YES"
    assert by_tag[("pixels", "(0028,0302)")]["action"] == "absent"
    # values are never copied into the report
    assert Identity().patient_id not in json.dumps(phi)


def test_phi_lists_container_metadata(planted):
    phi = _json(planted["mp4"].path)["phi"]
    keys = {p["tag"] for p in phi if p["where"] == "container"}
    assert {"title", "comment", "artist", "location", "creation_time"} <= keys
    assert "major_brand" not in keys and "encoder" not in keys


def test_phi_lists_metadata_of_an_mp4_inside_pixel_data(planted):
    phi = inspect_file(planted["h264-mp4"].path).phi
    assert {"title", "comment", "location"} <= {p.tag for p in phi if p.where == "pixel data container"}


def test_text_output_and_read_only(planted):
    path = planted["h264"].path
    before = hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "Video Photographic Image Storage" in result.stdout and "potential PHI" in result.stdout
    assert "Patient's Name" in result.stdout
    assert (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns) == before


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("missing.dcm", "no such file"),
        (PYDICOM_FILES / "test-SR.dcm", "not an image"),
        (PYDICOM_FILES / "JPEG2000.dcm", "cannot be decoded"),
    ],
)
def test_bad_input_exits_2_with_the_message(tmp_path, target, message):
    path = tmp_path / target if isinstance(target, str) else target
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    assert message in result.output and path.name in result.output


@pytest.mark.parametrize("name", ["scan[bold].dcm", "visit[1].mp4", "[b]x.dcm"])
def test_an_error_names_a_bracketed_file_literally(tmp_path, name):
    path = tmp_path / name
    path.write_text("neither DICOM nor video\n")
    result = runner.invoke(app, ["inspect", str(path)])
    assert result.exit_code == 2
    assert f"{path}: not a DICOM file and not a readable video file" in result.stderr
    assert "Traceback" not in result.output


def test_reports_a_phone_videos_rotation(tmp_path):
    phone = build_mp4_fixture(tmp_path / "phone.mp4", max_frames=4, rotation=90).path
    data = _json(phone)
    assert data["orientation"] == {"rotation": 90, "mirrored": False, "source": "display matrix"}
    assert (data["rows"], data["columns"]) == (144, 176)  # the upright picture; the file stores 176x144
    assert _json(build_mp4_fixture(tmp_path / "plain.mp4", max_frames=4).path)["orientation"]["rotation"] == 0
    text = runner.invoke(app, ["inspect", str(phone)]).stdout
    assert "90 degrees clockwise (display matrix)" in " ".join(text.split())


def test_lists_audio_streams_as_phi_places(tmp_path):
    plain = build_mp4_fixture(tmp_path / "voice.mp4", max_frames=4, audio=True).path
    wrapped = build_dicom_fixture(tmp_path / "voice.dcm", syntax="h264-mp4", max_frames=4, audio=True).path
    assert ("container", "audio:0", "X") in {(p["where"], p["tag"], p["action"]) for p in _json(plain)["phi"]}
    assert ("pixel data container", "audio:0") in {(p["where"], p["tag"]) for p in _json(wrapped)["phi"]}
    assert not [p for p in _json(build_mp4_fixture(tmp_path / "mute.mp4", max_frames=4).path)["phi"] if p["tag"].startswith("audio")]

