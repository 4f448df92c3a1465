"""Shared helpers for the header de-identification tests: the real-data corpus and dciodvfy."""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import subprocess
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pydicom.data.download

pydicom.data.download._SIMULATE_NETWORK_OUTAGE = True

#: a fixed test key (tests need reproducible outputs; never a real release key)
KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


def _package_dir(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@dataclass(frozen=True)
class CorpusFile:
    """One corpus file: a display name and how to read it (from disk or from inside a zip)."""

    name: str
    path: Path
    member: str | None = None

    def read(self) -> pydicom.Dataset:
        if self.member is None:
            return pydicom.dcmread(self.path)
        with zipfile.ZipFile(self.path) as zf:
            return pydicom.dcmread(io.BytesIO(zf.read(self.member)))

    def materialize(self, folder: Path) -> Path:
        """A path on disk (zip members are extracted into ``folder``), for dciodvfy."""
        if self.member is None:
            return self.path
        with zipfile.ZipFile(self.path) as zf:
            return Path(zf.extract(self.member, folder))


def deid_data_files() -> list[CorpusFile]:
    """Every DICOM file of the deid-data package, the zipped cine loops included."""
    root = _package_dir("deid_data")
    if root is None:
        return []
    files = [CorpusFile(f"deid-data/{p.relative_to(root / 'data')}", p)
             for p in sorted((root / "data").rglob("*.dcm"))]
    for z in sorted((root / "data").rglob("*.zip")):
        with zipfile.ZipFile(z) as zf:
            files += [CorpusFile(f"deid-data/{z.name}/{m}", z, m)
                      for m in zf.namelist() if m.lower().endswith(".dcm")]
    return files


def pydicom_image_files() -> list[CorpusFile]:
    """Every readable image file (pixel data, SOP class) of pydicom's test files and pydicom-data."""
    roots = [p for p in (_package_dir("pydicom") and _package_dir("pydicom") / "data" / "test_files",
                         _package_dir("data_store") and _package_dir("data_store") / "data") if p]
    files = []
    for root in roots:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in (".dcm", ""):
                continue
            try:
                ds = pydicom.dcmread(p, stop_before_pixels=False)
            except Exception:
                continue  # not readable: not part of the corpus
            if "PixelData" in ds and "SOPClassUID" in ds and "SOPInstanceUID" in ds:
                files.append(CorpusFile(f"{root.parent.name}/{p.relative_to(root)}", p))
    return files


def dciodvfy_errors(path: Path) -> set[str] | None:
    """The set of dciodvfy error lines of a file, values stripped; None if dciodvfy is absent."""
    exe = shutil.which("dciodvfy")
    if exe is None:
        return None
    proc = subprocess.run([exe, "-new", str(path)], capture_output=True, text=True,
                          errors="replace", timeout=120)
    errors = set()
    for line in (proc.stdout + proc.stderr).splitlines():
        if "Error" in line:
            # values differ between input and output by design; the kind of error must not
            errors.add(_VALUES.sub("", line).strip())
    return errors


_VALUES = re.compile(r"\s=\s<[^>]*>|\[\d+\]|\(0x[0-9a-f]{4},0x[0-9a-f]{4}\)\s+\?|<0x[0-9a-f]+>")

#: dciodvfy's sign that it could not parse a file at all (deflate, truncated pixel data)
UNREADABLE = "Dicom dataset read failed"


# ---------------------------------------------------------------------- hand-built datasets

from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.sequence import Sequence  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, generate_uid  # noqa: E402

SOP_CLASS = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture
PATIENT_ID = "MRN4471923"
PATIENT_NAME = "Hargreaves^Eleanor^Mae"
BIRTH_DATE = "19480923"


def sample_value(vr: str, n: int = 0):
    """A plausible, recognisable value for a VR (strings carry a unique marker)."""
    return {
        "AE": f"STATION{n}", "AS": "045Y", "CS": f"SECRETCS{n}", "DA": "20210315",
        "DT": "20210315101500", "TM": "101500", "DS": "12.5", "IS": str(4200 + n),
        "LO": f"Secret long {n}", "LT": f"Secret text {n}", "PN": f"Whitcombe^Doctor{n}",
        "SH": f"SECRET{n}", "ST": f"Secret short text {n}", "UC": f"Secret UC {n}",
        "UT": f"Secret UT {n}", "UI": f"1.2.826.0.1.99.{n}", "UR": f"http://secret{n}.example",
        "US": 7, "SS": -7, "UL": 70000, "SL": -70000, "FL": 1.5, "FD": 2.5,
        "OB": b"SECRETOB%02d" % n, "OW": b"SECRETOW%02d" % n, "UN": b"SECRETUN%02d" % n,
        "OF": b"\x00\x00\x80?", "OD": b"\x00" * 8, "OL": b"\x01\x00\x00\x00", "SV": 5, "UV": 5,
        "AT": 0x00100010,
    }[vr]


def make_dataset(*, patient_id: str = PATIENT_ID, sop_uid: str | None = None,
                 study_uid: str = "1.2.826.0.1.3680043.8.498.1") -> Dataset:
    """A Secondary Capture with typical PHI, a private block and a small pixel matrix."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SOP_CLASS
    ds.file_meta.SourceApplicationEntityTitle = "HOSPITAL_PACS"
    ds.SOPClassUID = SOP_CLASS
    ds.SOPInstanceUID = sop_uid or generate_uid(entropy_srcs=["sop", patient_id])
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = study_uid + ".1"
    ds.FrameOfReferenceUID = study_uid + ".2"
    if patient_id:
        ds.PatientID = patient_id
    ds.PatientName = PATIENT_NAME
    ds.PatientBirthDate = BIRTH_DATE
    ds.PatientSex = "F"
    ds.PatientAge = "076Y"
    ds.PatientAddress = "17 Larkspur Lane, Dunmore"
    ds.PatientTelephoneNumbers = "+44 20 7946 0958"
    ds.OtherPatientIDs = "NHS9434765919"
    ds.AccessionNumber = "ACC20210315"
    ds.StudyDate = "20210315"
    ds.StudyTime = "101500"
    ds.SeriesDate = "20210315"
    ds.ContentDate = "20210316"
    ds.AcquisitionDateTime = "20210315101702.250000"
    ds.StudyDescription = f"Gait exam of Eleanor Hargreaves {PATIENT_ID}"
    ds.SeriesDescription = "Walking 10m"
    ds.InstitutionName = "St Swithin Movement Clinic"
    ds.StationName = "GAITLAB2"
    ds.DeviceSerialNumber = "SN-88412"
    ds.ReferringPhysicianName = "Whitcombe^Henry"
    ds.Manufacturer = "Acme Imaging"
    ds.Modality = "OT"
    ds.ConversionType = "WSD"
    ds.BurnedInAnnotation = "NO"
    ds.StudyID = "S1234"
    ds.SeriesNumber = 3
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.Rows, ds.Columns = 4, 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = bytes(range(16))
    block = ds.private_block(0x0029, "ACME SECRET", create=True)
    block.add_new(0x10, "LO", f"Patient {PATIENT_NAME} ward 4")
    block.add_new(0x11, "OB", b"MRN4471923\x00\x00")
    return ds


def nest(depth: int) -> Dataset:
    """A dataset with a sequence ``depth`` levels deep, PHI and a UID at the bottom."""
    ds = make_dataset()
    item = Dataset()
    item.ReferencedSOPClassUID = SOP_CLASS
    item.ReferencedSOPInstanceUID = "1.2.826.0.1.3680043.8.498.77"
    item.PersonName = "Deepest^Person"
    item.AcquisitionDate = "20210315"
    item.add_new(0x00291010, "LO", "ACME SECRET")  # private creator inside a sequence
    item.add_new(0x00291011, "LO", "nested private secret")
    for level in range(depth - 1):
        outer = Dataset()
        keyword = "ReferencedImageSequence" if level % 2 else "SourceImageSequence"
        setattr(outer, keyword, Sequence([item]))
        item = outer
    ds.ReferencedImageSequence = Sequence([item])
    return ds


def element_paths(ds: pydicom.Dataset, prefix: str = "") -> dict[str, pydicom.DataElement]:
    """Every element of ``ds`` at any depth by its path, as :class:`~clinrelease.dicom.deid.HeaderChange`
    names it (``"(0008,1140)[0].(0008,1155)"``)."""
    paths: dict[str, pydicom.DataElement] = {}
    for elem in ds:
        path = f"{prefix}({elem.tag.group:04X},{elem.tag.element:04X})"
        paths[path] = elem
        if elem.VR == "SQ":
            for i, item in enumerate(elem.value or ()):
                paths.update(element_paths(item, f"{path}[{i}]."))
    return paths
