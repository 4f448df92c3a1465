"""The inswapper backend: model-folder errors, and insightface's real loading and inference code on
small ONNX models with inswapper_128's and ArcFace's signatures (built here; the real models are
licensed separately and never downloaded)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from _learned_helpers import astronaut, build_arcface_onnx, build_inswapper_onnx, carphone
from clinrelease.errors import ConfigError, InputError, MissingModelError
from clinrelease.face.base import Anonymizer, TrackedFace
from clinrelease.face.learned.crops import MeshDetector
from clinrelease.face.learned.inswapper import InswapperAnonymizer, inswapper_anonymizer, locate_models


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("insightface")
    (folder / "buffalo_l").mkdir()
    build_inswapper_onnx(folder / "inswapper_128.onnx")
    build_arcface_onnx(folder / "buffalo_l" / "w600k_r50.onnx")
    return folder


@pytest.fixture(scope="module")
def frame_and_face():
    from clinrelease.dicom.video import open_video

    frame = next(iter(open_video(carphone()).frames()))
    with MeshDetector() as detect:
        landmarks = detect(frame)[0]
    box = np.array([*landmarks.min(0), *landmarks.max(0)], np.float32)
    return frame, TrackedFace(0, 0, box, landmarks=landmarks)


def test_missing_folder_and_files_are_named(tmp_path, model_folder):
    with pytest.raises(MissingModelError, match="never downloaded") as err:
        locate_models(tmp_path / "absent")
    assert err.value.path == tmp_path / "absent"
    with pytest.raises(MissingModelError, match="inswapper_128.onnx is missing") as err:
        locate_models(tmp_path)
    assert err.value.path == tmp_path / "inswapper_128.onnx"
    shutil.copy(model_folder / "inswapper_128.onnx", tmp_path)
    with pytest.raises(MissingModelError, match="w600k_r50.onnx") as err:
        inswapper_anonymizer(model=tmp_path, surrogate=astronaut())
    assert err.value.path == tmp_path / "buffalo_l" / "w600k_r50.onnx"
    # a flat folder (recognizer beside the swapper) is accepted too, and the detector is optional
    shutil.copy(model_folder / "buffalo_l" / "w600k_r50.onnx", tmp_path)
    files = locate_models(tmp_path)
    assert files.recognizer == tmp_path / "w600k_r50.onnx" and files.detector is None


def test_wrong_model_in_the_swapper_slot_is_an_input_error(tmp_path, model_folder):
    (tmp_path / "buffalo_l").mkdir()
    shutil.copy(model_folder / "buffalo_l" / "w600k_r50.onnx", tmp_path / "buffalo_l")
    shutil.copy(model_folder / "buffalo_l" / "w600k_r50.onnx", tmp_path / "inswapper_128.onnx")
    with pytest.raises(InputError, match="expected an insightface INSwapper model, the file loads as ArcFaceONNX"):
        InswapperAnonymizer(tmp_path, embedding=np.ones(512))
    (tmp_path / "inswapper_128.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(InputError, match="cannot load ONNX model"):
        InswapperAnonymizer(tmp_path, embedding=np.ones(512))


def test_model_folder_from_the_environment(model_folder, monkeypatch):
    monkeypatch.delenv("CLINRELEASE_MODEL_DIR", raising=False)
    with pytest.raises(MissingModelError, match="never downloads"):
        inswapper_anonymizer(surrogate=astronaut())
    monkeypatch.setenv("CLINRELEASE_MODEL_DIR", str(model_folder))
    anonymizer = inswapper_anonymizer(embedding=np.ones(512))
    assert anonymizer.files.swapper == model_folder / "inswapper_128.onnx"


def test_factory_parameter_errors(model_folder):
    with pytest.raises(ConfigError, match="no parameter swapper"):
        inswapper_anonymizer(model=model_folder, swapper="x")
    with pytest.raises(ConfigError, match="needs one of"):
        inswapper_anonymizer(model=model_folder)
    with pytest.raises(ConfigError, match="needs one of"):
        inswapper_anonymizer(model=model_folder, surrogate=astronaut(), embedding=np.ones(512))
    with pytest.raises(ConfigError, match="512 finite numbers"):
        inswapper_anonymizer(model=model_folder, embedding=np.ones(128))


def test_surrogate_image_goes_through_the_recognizer(model_folder):
    anonymizer = inswapper_anonymizer(model=model_folder, surrogate=str(astronaut()))
    assert isinstance(anonymizer, Anonymizer) and anonymizer.name == "inswapper"
    assert type(anonymizer.recognizer).__name__ == "ArcFaceONNX"
    assert anonymizer.recognizer.input_size == (112, 112)
    vector = anonymizer.source.normed_embedding
    assert vector.shape == (512,) and abs(float(np.linalg.norm(vector)) - 1) < 1e-5
    # the embedding is the recognizer's output on the aligned surrogate face, not a constant
    from clinrelease.face.learned.crops import align_face, CropTemplate

    import cv2

    image = cv2.cvtColor(cv2.imread(str(astronaut())), cv2.COLOR_BGR2RGB)
    with MeshDetector() as detect:
        aligned = align_face(image, detect(image)[0], CropTemplate(112, 0.0)).image
    direct = anonymizer.recognizer.get_feat(aligned[:, :, ::-1].copy()).reshape(-1)
    cosine = float(direct @ vector / np.linalg.norm(direct))
    assert cosine > 0.99


def test_swap_changes_the_face_by_the_surrogate_latent(model_folder, frame_and_face):
    frame, face = frame_and_face
    emap = build_inswapper_onnx(model_folder / "check.onnx")  # same seed: the folder's emap
    rng = np.random.default_rng(5)
    first, second = rng.standard_normal(512), rng.standard_normal(512)
    outputs = []
    for vector in (first, second):
        anonymizer = InswapperAnonymizer(model_folder, embedding=vector)
        assert type(anonymizer.swapper).__name__ == "INSwapper"
        np.testing.assert_array_equal(anonymizer.swapper.emap, emap)  # the last initializer was read
        out = anonymizer.anonymize_frame(frame.copy(), [face])
        assert out.shape == frame.shape and out.dtype == np.uint8
        outputs.append(out)
    x0, y0, x1, y1 = face.box.astype(int)
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    centre = (slice(cy - 8, cy + 8), slice(cx - 8, cx + 8))
    for out in outputs:
        assert np.abs(out[centre].astype(int) - frame[centre].astype(int)).mean() > 10  # face replaced
        assert np.array_equal(out[:10, :10], frame[:10, :10])  # far corner untouched
    # another surrogate identity gives another face
    assert np.abs(outputs[0][centre].astype(int) - outputs[1][centre].astype(int)).mean() > 3
    # no faces: the frame comes back as it was
    assert np.array_equal(anonymizer.anonymize_frame(frame.copy(), []), frame)


def test_face_without_landmarks_is_refused(model_folder, frame_and_face):
    frame, face = frame_and_face
    anonymizer = InswapperAnonymizer(model_folder, embedding=np.ones(512))
    with pytest.raises(InputError, match="no landmarks"):
        anonymizer.anonymize_frame(frame.copy(), [TrackedFace(3, 0, face.box, landmarks=None)])


def test_release_key_chooses_the_surrogate(model_folder):
    """What `run` passes (key and pseudonym): the key-chosen composite, stable per patient."""
    key = bytes(range(32))
    first = inswapper_anonymizer(model=model_folder, key=key, pseudonym="PAAAA")
    again = inswapper_anonymizer(model=model_folder, key=key.hex(), pseudonym="PAAAA")
    np.testing.assert_allclose(first.source.normed_embedding, again.source.normed_embedding, atol=1e-6)
    others = [
        inswapper_anonymizer(model=model_folder, key=key, pseudonym=p).source.normed_embedding
        for p in ("PBBBB", "PCCCC", "PDDDD")
    ]
    assert any(np.abs(o - first.source.normed_embedding).max() > 1e-3 for o in others)
    # an explicit surrogate wins over the key
    fixed = inswapper_anonymizer(model=model_folder, surrogate=astronaut(), key=key, pseudonym="PAAAA")
    plain = inswapper_anonymizer(model=model_folder, surrogate=astronaut())
    np.testing.assert_allclose(fixed.source.normed_embedding, plain.source.normed_embedding, atol=1e-6)
