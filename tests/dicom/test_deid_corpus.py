"""The Basic Profile on every file of deid-data and every readable image file of pydicom's test data.

Zero residual original values, markers present, UIDs one-to-one with references intact, no new
dciodvfy error at all (attributes the table removes but the IOD requires are kept empty or with a
dummy), burned-in files quarantined without Clean Pixel Data.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest

from _deid_helpers import KEY, UNREADABLE, CorpusFile, dciodvfy_errors, deid_data_files, element_paths, pydicom_image_files
from clinrelease.dicom.deid import BURNED_IN_REASON, DeidResult, Deidentifier, output_relpath, write_deidentified
from clinrelease.dicom.residual import Finding, residual_phi
from clinrelease.errors import VerificationError

CORPUS = deid_data_files() + pydicom_image_files()
pytestmark = pytest.mark.skipif(not CORPUS, reason="deid-data / pydicom-data are not installed")


@dataclass
class Item:
    file: CorpusFile
    original: pydicom.Dataset
    result: DeidResult
    out_path: Path
    findings: list[Finding]
    quarantined: str | None  # the VerificationError message under the Basic Profile, if any


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> list[Item]:
    out_root = tmp_path_factory.mktemp("release")
    basic = Deidentifier([], KEY)
    pixel = Deidentifier(["clean_pixel_data"], KEY)
    items = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the test files' invalid values
        for n, cf in enumerate(CORPUS):
            ds = cf.read()
            quarantined = None
            try:
                result = basic.deidentify(ds)
            except VerificationError as exc:
                quarantined = exc.message
                result = pixel.deidentify(ds, pixels_cleaned=True)
            # pydicom's test files share SOP Instance UIDs between variants: one folder each
            out = write_deidentified(result.dataset, out_root / str(n) / output_relpath(result.dataset))
            back = pydicom.dcmread(out)
            items.append(Item(cf, ds, result, out, residual_phi(ds, back, result), quarantined))
    return items


def test_corpus_is_complete(corpus):
    names = {i.file.name for i in corpus}
    assert len([n for n in names if n.startswith("deid-data/")]) == 15
    assert len(corpus) >= 150


def test_zero_residual_phi(corpus):
    leaks = {i.file.name: i.findings for i in corpus if i.findings}
    assert leaks == {}


def _converted(ds: pydicom.Dataset) -> pydicom.Dataset:
    for _ in ds.iterall():  # every value through pydicom's own conversion
        pass
    return ds


def test_the_residual_check_reads_values_as_read_exactly_as_pydicom_converts_them(corpus):
    """The check reads raw values straight from their bytes; on every corpus file, judged as
    released and with the original itself as the output (every value a finding), it finds what it
    finds on the same data sets fully converted by pydicom."""
    compared = findings = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in corpus:
            for output in (lambda: pydicom.dcmread(item.out_path), item.file.read):
                raw = residual_phi(item.file.read(), output(), item.result)
                converted = residual_phi(_converted(item.file.read()), _converted(output()), item.result)
                assert raw == converted, item.file.name
                compared, findings = compared + 1, findings + len(raw)
    assert compared == 2 * len(corpus) and findings > 1000


def test_markers_present(corpus):
    for item in corpus:
        ds = pydicom.dcmread(item.out_path, stop_before_pixels=True)
        assert ds.PatientIdentityRemoved == "YES", item.file.name
        assert ds.DeidentificationMethodCodeSequence[0].CodeValue == "113100", item.file.name
        assert ds.LongitudinalTemporalInformationModified == "REMOVED", item.file.name
        assert "OriginalAttributesSequence" not in ds and "IconImageSequence" not in ds
        assert ds.file_meta.ImplementationClassUID == "2.25.163981712392741386640712431587373318417"
        assert ds.PatientID == item.result.pseudonym


def test_burned_in_files_are_quarantined(corpus):
    flagged = {i.file.name for i in corpus if i.quarantined}
    expected = {i.file.name for i in corpus if str(i.original.get("BurnedInAnnotation", "")).upper() == "YES"}
    assert flagged == expected and len(expected) >= 2
    assert all(i.quarantined == BURNED_IN_REASON for i in corpus if i.quarantined)


def test_uids_one_to_one_and_references_intact(corpus):
    mapping: dict[str, str] = {}
    for item in corpus:
        before_at, after_at = element_paths(item.original), element_paths(item.result.dataset)
        for change in item.result.changes:
            if change.action != "U":
                continue
            before, after = before_at[change.path], after_at[change.path]
            olds = list(before.value) if before.VM > 1 else [before.value]
            news = list(after.value) if after.VM > 1 else [after.value]
            for old, new in zip([o for o in olds if str(o).strip()], news):
                assert mapping.setdefault(str(old), str(new)) == str(new), "same UID, two replacements"
    assert len(set(mapping.values())) == len(mapping), "two UIDs share a replacement"
    assert not set(mapping) & set(mapping.values())
    assert all(re.fullmatch(r"2\.25\.\d{1,39}", v) for v in mapping.values())
    # references between corpus files still resolve after de-identification
    sop_in = {str(i.original.SOPInstanceUID) for i in corpus}
    sop_out = {str(i.result.dataset.SOPInstanceUID) for i in corpus}
    followed = 0
    for item in corpus:
        for elem in item.original.iterall():
            if elem.keyword == "ReferencedSOPInstanceUID" and str(elem.value) in sop_in:
                assert mapping[str(elem.value)] in sop_out
                followed += 1
    assert followed > 0


def test_no_new_dciodvfy_errors(corpus, tmp_path):
    if dciodvfy_errors(corpus[0].out_path) is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")
    new_errors = {}
    for item in corpus:
        before = dciodvfy_errors(item.file.materialize(tmp_path))
        if any(UNREADABLE in e for e in before):
            continue  # dciodvfy cannot parse the input (deflate, truncated): nothing to compare
        added = dciodvfy_errors(item.out_path) - before
        if added:
            new_errors[item.file.name] = sorted(added)
    assert new_errors == {}


def test_the_released_bytes_are_what_pydicom_writes(corpus):
    """The writer's raw-element shortcut changes no byte of any corpus file (every syntax, charset,
    sequence and pixel data encoding in it)."""
    import io

    from clinrelease.dicom.deid import encode_deidentified

    basic = Deidentifier([], KEY)
    shortcut = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for item in corpus:
            if item.quarantined:
                continue
            ours, theirs = (basic.deidentify(item.file.read()).dataset for _ in range(2))
            data = encode_deidentified(ours)
            buffer = io.BytesIO()
            pydicom.dcmwrite(buffer, theirs, enforce_file_format=True)
            assert data == buffer.getvalue(), item.file
            assert item.out_path.read_bytes() == data, item.file
            shortcut += theirs.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    assert shortcut >= 10  # the shortcut ran on many of them
