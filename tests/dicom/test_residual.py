"""The residual-PHI check's reading of raw values: what it remembers across objects."""

from __future__ import annotations

import io

import pydicom
from pydicom.dataelem import RawDataElement

from _deid_helpers import KEY, make_dataset
from clinrelease.dicom import residual
from clinrelease.dicom.deid import Deidentifier, encode_deidentified
from clinrelease.dicom.residual import residual_phi


def _read_back(ds) -> pydicom.Dataset:
    """``ds`` as the release reads its output: from the written bytes, values raw."""
    return pydicom.dcmread(io.BytesIO(encode_deidentified(ds)))


def _released_with_planted_bytes(charset: str, name: str, planted: bytes):
    """An original in ``charset`` named ``name``, and its output read back with ``planted`` in a private LO."""
    ds = make_dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    result = Deidentifier([], KEY).deidentify(ds)
    result.dataset.add_new(0x00091010, "LO", planted)
    return ds, _read_back(result.dataset), result


def test_the_same_bytes_are_read_in_each_objects_character_set() -> None:
    utf8_name = "Müller".encode()  # reads "MÃ¼ller" in Latin-1: no name of that patient
    latin = _released_with_planted_bytes("ISO_IR 100", "Schmidt^Anna", utf8_name)
    assert "(0009,1010)" not in {f.path for f in residual_phi(*latin)}
    utf8 = _released_with_planted_bytes("ISO_IR 192", "Müller^Anna", utf8_name)
    assert ("identifying-string", "(0009,1010)") in {(f.kind, f.path) for f in residual_phi(*utf8)}


def test_remembered_texts_depend_on_byte_order_and_stay_bounded(monkeypatch) -> None:
    monkeypatch.setattr(residual, "_TEXTS_CACHE", {})
    monkeypatch.setattr(residual, "_CACHE_ENTRIES", 3)
    little = RawDataElement(0x00280010, "US", 2, b"\x01\x02", 0, False, True)
    big = little._replace(is_little_endian=False)
    assert residual._cached_raw_texts(little, None) == ("513",)
    assert residual._cached_raw_texts(big, None) == ("258",)
    for value in (b"\x00\x01", b"\x00\x02", b"\x00\x03"):
        residual._cached_raw_texts(little._replace(value=value), None)
    assert len(residual._TEXTS_CACHE) <= 3
