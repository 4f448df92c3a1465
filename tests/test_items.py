"""Input discovery: folders, DICOMDIR sets, plain videos with their metadata rows, clear errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.fileset import FileSet

from _release_helpers import deid_data_dir
from clinrelease.errors import InputError
from clinrelease.fixtures import build_mp4_fixture, carphone_path
from clinrelease.items import discover_items, read_metadata_table


@pytest.fixture(scope="module")
def mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mp4_fixture(tmp_path_factory.mktemp("mp4") / "clip.mp4", carphone_path(), 4).path


def _ct(folder: Path, name: str = "ct.dcm", source: str = "humans/ctbrain1.dcm") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(deid_data_dir() / source, folder / name))


def test_folder_recursion_sidecars_and_metadata_rows(tmp_path: Path, mp4: Path) -> None:
    _ct(tmp_path / "in" / "a" / "b")
    shutil.copyfile(mp4, tmp_path / "in" / "a" / "walk.mp4")
    (tmp_path / "in" / "notes.csv").write_text("x,y\n1,2\n")
    (tmp_path / "in" / "README.txt").write_text("hello")
    (tmp_path / "in" / "._walk.mp4").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # macOS litter
    meta = tmp_path / "meta.csv"
    meta.write_text("file,patient_id,patient_name,study_date\na/walk.mp4,P1,Doe^Jane,20240101\n")
    items = discover_items([tmp_path / "in"], meta)
    assert [(i.relpath, i.kind) for i in items] == [("a/b/ct.dcm", "dicom"), ("a/walk.mp4", "container")]
    assert items[1].metadata == {"PatientID": "P1", "PatientName": "Doe^Jane", "StudyDate": "20240101"}
    # ids are stable (resume depends on them) and distinct
    again = discover_items([tmp_path / "in"], meta)
    assert [i.item_id for i in again] == [i.item_id for i in items] and items[0].item_id != items[1].item_id


def test_metadata_row_by_file_name_and_single_file_inputs(tmp_path: Path, mp4: Path) -> None:
    ct = _ct(tmp_path / "in")
    meta = tmp_path / "meta.csv"
    meta.write_text("file,patient_id\nclip.mp4,P9\n")
    items = discover_items([mp4, ct], meta)
    assert [i.relpath for i in items] == ["clip.mp4", "ct.dcm"]
    assert items[0].metadata == {"PatientID": "P9"}


def test_plain_video_without_metadata_row_is_a_clear_error(tmp_path: Path, mp4: Path) -> None:
    with pytest.raises(InputError, match="needs a row in the metadata table") as exc:
        discover_items([mp4])
    assert exc.value.path == mp4
    meta = tmp_path / "meta.csv"
    meta.write_text("file,patient_id\nother.mp4,P1\n")
    with pytest.raises(InputError, match="--metadata FILE"):
        discover_items([mp4], meta)


def test_metadata_table_errors_name_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "meta.csv"
    bad.write_text("video,patient_id\nx.mp4,P1\n")
    with pytest.raises(InputError, match="'file' column"):
        read_metadata_table(bad)
    bad.write_text("file,patient_id,shoe_size\nx.mp4,P1,42\n")
    with pytest.raises(InputError, match="unknown metadata column.*shoe_size"):
        read_metadata_table(bad)
    bad.write_bytes(b"file,patient_id\n\xff\xfe.mp4,P1\n")
    with pytest.raises(InputError, match="not a UTF-8 CSV"):
        read_metadata_table(bad)


def test_unknown_and_cut_files_are_item_errors_and_empty_inputs_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    ct = _ct(folder)
    (folder / "scan.bin").write_bytes(b"\x00" * 300)
    (folder / "Doe_Jane.dcm").write_bytes(ct.read_bytes()[:100])  # cut before its DICM preamble
    items = {item.relpath: item for item in discover_items([folder])}
    assert items[ct.name].kind == "dicom" and items[ct.name].problem is None
    assert items["scan.bin"].kind == "unreadable"
    assert items["scan.bin"].problem == "neither a DICOM file (no DICM preamble) nor a known video file type"
    assert items["Doe_Jane.dcm"].problem.startswith("the file is truncated or not DICOM: 100 bytes")
    # the reason is released: it never carries the file's name
    assert "doe" not in items["Doe_Jane.dcm"].problem.lower()
    with pytest.raises(InputError, match="no such file"):
        discover_items([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no items here")
    with pytest.raises(InputError, match="no DICOM or video files"):
        discover_items([tmp_path / "empty"])


def _dicomdir_set(folder: Path) -> Path:
    """A real DICOMDIR (pydicom's FileSet writer) over two deid-data files."""
    staging = folder.parent / "staging"
    fs = FileSet()
    for name in ("humans/ctbrain1.dcm", "dicom-cookies/image1.dcm"):
        ds = pydicom.dcmread(_ct(staging, Path(name).name, name))
        # the default directory records need these (the deid-data files leave them empty)
        for keyword, value in (("StudyID", "1"), ("SeriesNumber", 1), ("InstanceNumber", 1), ("Modality", "OT")):
            if not ds.get(keyword):
                setattr(ds, keyword, value)
        fs.add(ds)
    fs.write(folder)
    return folder / "DICOMDIR"


def test_dicomdir_members_are_items_and_the_dicomdir_is_not(tmp_path: Path) -> None:
    dicomdir = _dicomdir_set(tmp_path / "set")
    from_folder = discover_items([tmp_path / "set"])
    from_file = discover_items([dicomdir])
    assert len(from_folder) == 2 and all(i.kind == "dicom" for i in from_folder)
    assert all(i.path.name != "DICOMDIR" for i in from_folder)
    # naming only the DICOMDIR finds the same members
    assert [i.relpath for i in from_file] == [i.relpath for i in from_folder]


def test_dicomdir_with_a_missing_member_makes_it_an_item_error(tmp_path: Path) -> None:
    _dicomdir_set(tmp_path / "set")
    member = next(p for p in (tmp_path / "set").rglob("*") if p.is_file() and p.name != "DICOMDIR")
    member.unlink()
    items = {i.path: i for i in discover_items([tmp_path / "set"])}
    assert items[member].kind == "unreadable" and items[member].problem == "listed in its DICOMDIR, but missing"
    assert [i.kind for p, i in items.items() if p != member] == ["dicom"]  # the other member goes on


def test_duplicate_objects_are_marked_after_the_first(tmp_path: Path, mp4: Path) -> None:
    # deid-data's two CT brain files share one SOP Instance UID; two copies of one video share bytes
    _ct(tmp_path / "in", "ct1.dcm", "humans/ctbrain1.dcm")
    _ct(tmp_path / "in", "ct2.dcm", "humans/ctbrain2.dcm")
    _ct(tmp_path / "in", "other.dcm", "dicom-cookies/image1.dcm")
    shutil.copyfile(mp4, tmp_path / "in" / "a.mp4")
    shutil.copyfile(mp4, tmp_path / "in" / "b.mp4")
    meta = tmp_path / "meta.csv"
    meta.write_text("file,patient_id\na.mp4,P1\nb.mp4,P1\n")
    items = {i.relpath: i for i in discover_items([tmp_path / "in"], meta)}
    assert items["ct2.dcm"].duplicate_of == items["ct1.dcm"].item_id
    assert items["b.mp4"].duplicate_of == items["a.mp4"].item_id
    assert items["ct1.dcm"].duplicate_of is None and items["a.mp4"].duplicate_of is None
    assert items["other.dcm"].duplicate_of is None


def test_item_ids_are_keyed_by_the_release_key_not_a_hash_of_the_name(tmp_path: Path) -> None:
    import hashlib

    _ct(tmp_path / "in", "Smith_John_visit.dcm")
    key, other = bytes(range(32)), bytes(range(1, 33))
    first = discover_items([tmp_path / "in"], id_key=key)[0]
    assert first.item_id == discover_items([tmp_path / "in"], id_key=key)[0].item_id  # resume needs this
    assert first.item_id != discover_items([tmp_path / "in"], id_key=other)[0].item_id
    # the old id, an unkeyed hash of the name, was found by hashing guessed names
    assert first.item_id != hashlib.sha256(b"Smith_John_visit.dcm").hexdigest()[:16]
    assert len(first.item_id) == 16


def _read_partial_uid(path: Path):
    from pydicom.filereader import read_partial

    from clinrelease.items import _past_sop_instance_uid

    try:
        with open(path, "rb") as fh:
            return read_partial(fh, stop_when=_past_sop_instance_uid, specific_tags=[0x00080018]).get("SOPInstanceUID")
    except Exception as exc:
        return type(exc)


def test_the_scanned_sop_instance_uid_is_what_pydicom_reads(tmp_path: Path) -> None:
    """Duplicates are found by SOP Instance UID, scanned from a file's first bytes where their
    encoding is plain: the same value as pydicom's read on every corpus file (every syntax, files
    cut short, without meta) and where the UID lies past the scanned bytes."""
    import warnings

    from _deid_helpers import deid_data_files, pydicom_image_files
    from clinrelease import items

    files = [Path(cf.materialize(tmp_path / "corpus")) for cf in deid_data_files() + pydicom_image_files()]
    ds = pydicom.dcmread(deid_data_dir() / "humans" / "ctbrain1.dcm")
    ds.ImageType = ["DERIVED"] * 3000  # (0008,0008): the UID after it lies past the first bytes
    ds.save_as(tmp_path / "long.dcm")
    ds = pydicom.dcmread(deid_data_dir() / "humans" / "ctbrain1.dcm")
    del ds.SOPInstanceUID
    ds.save_as(tmp_path / "none.dcm")
    files += [tmp_path / "long.dcm", tmp_path / "none.dcm"]
    scanned = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in files:
            with open(path, "rb") as fh:
                quick = items._scanned_sop_instance_uid(fh.read(items._HEAD_BYTES))
            expected = _read_partial_uid(path)
            if quick is not items._UNSURE:
                scanned += 1
                assert quick == expected, path
            try:
                assert items._sop_instance_uid(path) == expected, path
            except Exception as exc:
                assert type(exc) is expected, path
    assert scanned >= len(files) // 2
    with open(tmp_path / "long.dcm", "rb") as fh:
        assert items._scanned_sop_instance_uid(fh.read(items._HEAD_BYTES)) is items._UNSURE
