"""The torch port of dlib's face recognition ResNet against dlib itself, on real faces."""

from __future__ import annotations

import itertools

import cv2
import numpy as np
import pytest

from clinrelease.errors import ConfigError, InputError
from clinrelease.models import model_path
from clinrelease.verify.dlib_net import descriptors, load_dlib_resnet, parse_dlib_dat

dlib = pytest.importorskip("dlib")

#: carphone frames used: 0 and 1 are the "nearby frames" of the same face
CARPHONE_FRAMES = (0, 1, 60, 119)


def _chip(image: np.ndarray, box, shape_predictor) -> tuple[np.ndarray, object]:
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    shape = shape_predictor(image, dlib.rectangle(x0, y0, x1, y1))
    return dlib.get_face_chip(image, shape, 150, 0.25), shape


@pytest.fixture(scope="module")
def faces() -> dict:
    """Chips of the carphone face on four frames and of the six people in t1.jpg, with dlib's descriptors."""
    from clinrelease.dicom.video import open_video
    from clinrelease.face.detect import FaceDetector
    from clinrelease.fixtures import carphone_path

    try:
        clip = carphone_path()
    except InputError as exc:
        pytest.skip(str(exc))
    detector = FaceDetector()
    sp = dlib.shape_predictor(str(model_path("dlib_shape_predictor_5")))
    rec = dlib.face_recognition_model_v1(str(model_path("dlib_face_recognition")))

    chips, via_shape = [], []
    frames = {}
    for i, frame in enumerate(open_video(clip).frames()):
        if i in CARPHONE_FRAMES:
            frames[i] = frame
        if len(frames) == len(CARPHONE_FRAMES):
            break
    for i in CARPHONE_FRAMES:
        chip, shape = _chip(frames[i], detector.detect(frames[i])[0].box, sp)
        chips.append(chip)
        via_shape.append(rec.compute_face_descriptor(frames[i], shape))
    group = cv2.cvtColor(cv2.imread(str(model_path("sample_faces_t1"))), cv2.COLOR_BGR2RGB)
    people = detector.detect(group)
    assert len(people) == 6
    for det in people:
        chip, shape = _chip(group, det.box, sp)
        chips.append(chip)
        via_shape.append(rec.compute_face_descriptor(group, shape))
    chips_arr = np.stack(chips)
    reference = np.array([rec.compute_face_descriptor(c) for c in chips_arr], np.float64)
    boxes = [detector.detect(frames[i])[0].box for i in CARPHONE_FRAMES] + [d.box for d in people]
    images = [frames[i] for i in CARPHONE_FRAMES] + [group] * len(people)
    return {
        "chips": chips_arr,
        "dlib": reference,
        "dlib_via_shape": np.array(via_shape, np.float64),
        "n_carphone": len(CARPHONE_FRAMES),
        "images": images,
        "boxes": boxes,
    }


@pytest.fixture(scope="module")
def net():
    return load_dlib_resnet(str(model_path("dlib_face_recognition")))


def test_chip_is_what_dlib_embeds(faces):
    # compute_face_descriptor(img, shape) extracts exactly get_face_chip(img, shape, 150, 0.25)
    assert np.array_equal(faces["dlib"], faces["dlib_via_shape"])


def test_descriptors_match_dlib(faces, net):
    ours = descriptors(net, faces["chips"])
    assert ours.shape == (len(faces["chips"]), 128) and ours.dtype == np.float32
    assert np.abs(ours - faces["dlib"]).max() <= 1e-3
    # batching changes nothing that matters
    one_by_one = descriptors(net, faces["chips"], batch_size=1)
    assert np.abs(one_by_one - ours).max() <= 1e-5
    assert np.allclose(descriptors(net, faces["chips"][0]), ours[:1], atol=1e-5)


def test_identity_decisions(faces, net):
    emb = descriptors(net, faces["chips"])
    n = faces["n_carphone"]
    dist = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    assert dist[0, 1] < 0.6  # the same face on two consecutive frames
    assert (dist[:n, :n] < 0.6).all()  # and anywhere in the clip
    people = np.arange(n, len(emb))
    different = [(a, b) for a, b in itertools.combinations(people, 2)] + [(0, b) for b in people]
    assert min(dist[a, b] for a, b in different) > 0.6
    # the same verdicts as dlib's own descriptors
    ref = np.linalg.norm(faces["dlib"][:, None] - faces["dlib"][None], axis=-1)
    assert ((dist < 0.6) == (ref < 0.6)).all()


def test_the_dlib_recognizer_gives_dlibs_own_descriptor(faces):
    # the verifier's "dlib" recognizer runs the torch port; its verdicts must be dlib's
    from clinrelease.verify.reid import get_recognizer

    rec = get_recognizer("dlib")
    ours = np.array([rec.embed(image, box=box) for image, box in zip(faces["images"], faces["boxes"])])
    assert np.abs(ours - faces["dlib_via_shape"]).max() <= 1e-3


def test_parse_reads_the_whole_file_quickly():
    parsed = parse_dlib_dat(model_path("dlib_face_recognition"))
    assert parsed.load_seconds < 3.0
    kinds = [layer.kind for layer in parsed.layers]
    assert kinds.count("con") == 29 and kinds.count("affine") == 29 and kinds.count("fc") == 1
    assert np.allclose(parsed.layers[0].arrays["mean"], [122.782, 117.001, 104.298], atol=1e-3)
    assert parsed.layers[1].arrays["weight"].shape == (32, 3, 7, 7)
    assert parsed.layers[-1].arrays["weight"].shape == (256, 128)
    assert parsed.loss["dist_thresh"] == pytest.approx(0.6)


def test_unparseable_files_are_config_errors(tmp_path):
    data = model_path("dlib_face_recognition").read_bytes()
    truncated = tmp_path / "truncated.dat"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "shape_predictor.dat"
    garbage.write_bytes(model_path("dlib_shape_predictor_5").read_bytes())
    for path in (truncated, garbage, tmp_path / "missing.dat"):
        with pytest.raises(ConfigError) as info:
            parse_dlib_dat(path)
        assert str(path) in str(info.value)


def test_chips_must_be_uint8_150(net):
    with pytest.raises(ValueError):
        descriptors(net, np.zeros((1, 150, 150, 3), np.float32))
    with pytest.raises(ValueError):
        descriptors(net, np.zeros((1, 112, 112, 3), np.uint8))
