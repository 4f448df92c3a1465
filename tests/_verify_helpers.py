"""Shared fixtures for the verification tests: short real clips written with PyAV, simple anonymizations."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from clinrelease.face.base import FaceAnalysis

#: ../shared/media beside the clone
SHARED_MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def read_frames(path: Path, count: int) -> list[np.ndarray]:
    """The first ``count`` RGB frames of a video."""
    from clinrelease.dicom.video import open_video

    frames = []
    for frame in open_video(path).frames():
        frames.append(frame)
        if len(frames) == count:
            break
    return frames


def write_clip(path: Path, frames: list[np.ndarray], fps: int = 30, metadata: dict[str, str] | None = None, codec: str = "mpeg4") -> Path:
    """Encode RGB frames into an MP4 at high quality, so the checks see the pixels we made.

    ``mpeg4`` with the bit-exact flags writes no encoder text; ``libx264`` writes its settings SEI.
    """
    import av

    with av.open(str(path), "w", options={"fflags": "+bitexact"}) as container:
        for key, value in (metadata or {}).items():
            container.metadata[key] = value
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = frames[0].shape[1], frames[0].shape[0]
        stream.pix_fmt = "yuv420p"
        if codec == "libx264":
            stream.options = {"crf": "12", "preset": "ultrafast"}
        else:
            stream.bit_rate = 12_000_000
            stream.codec_context.flags |= av.codec.context.Flags.bitexact
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def close_mouth(frame: np.ndarray, face) -> np.ndarray:
    """``frame`` with the tracked face's open mouth drawn closed: the lower lip and chin pulled up
    until the lower lip meets the upper one, as a surrogate whose own closed mouth wins over the
    patient's looks (the face still reads as a face; only its expression changed). As it is where
    the face has no mesh."""
    if face is None or face.landmarks is None:
        return frame
    frame = frame.copy()
    m = face.landmarks
    upper, lower, chin = float(m[13, 1]), float(m[14, 1]), float(m[152, 1])
    left, right = sorted((float(m[61, 0]), float(m[291, 0])))
    pad = 0.3 * (right - left)
    x0, x1 = int(left - 2 * pad), int(right + 2 * pad) + 1
    y0, y1 = int(upper), int(chin) + 1
    yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
    across = np.clip(np.minimum(xx - (left - 2 * pad), (right + 2 * pad) - xx) / pad, 0.0, 1.0)
    down = np.clip(1.0 - (yy - upper) / max(chin - upper, 1.0), 0.0, 1.0)
    frame[y0:y1, x0:x1] = cv2.remap(frame, xx, yy + (lower - upper) * across * down, cv2.INTER_LINEAR)
    return frame


def mask_faces(frames: list[np.ndarray], analysis: FaceAnalysis, grow: float = 0.35) -> list[np.ndarray]:
    """Black out every tracked face (box grown by ``grow`` on each side): the bluntest anonymization."""
    out = []
    for index, frame in enumerate(frames):
        frame = frame.copy()
        for face in analysis.faces_in_frame(index):
            x0, y0, x1, y1 = face.box
            w, h = x1 - x0, y1 - y0
            frame[max(0, int(y0 - grow * h)) : int(y1 + grow * h), max(0, int(x0 - grow * w)) : int(x1 + grow * w)] = 0
        out.append(frame)
    return out


def blur_all(frames: list[np.ndarray], sigma: float = 12.0) -> list[np.ndarray]:
    """Heavy Gaussian blur of the whole frame: hides the face and the body alike."""
    return [cv2.GaussianBlur(f, (0, 0), sigma) for f in frames]


def donor_face(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The largest face of a donor image: the image and its five YuNet points."""
    from clinrelease.verify.reid import face_locator

    faces = face_locator().detect(image)
    row = max(faces, key=lambda r: r[2] * r[3])
    return image, row[4:14].reshape(5, 2)


def paste_donor(frames: list[np.ndarray], analysis: FaceAnalysis, donor: tuple[np.ndarray, np.ndarray]) -> list[np.ndarray]:
    """A crude face swap for tests: warp the donor's face onto each tracked face by its five points
    (similarity transform) and blend it in with Poisson cloning. Keeps a face where the face was, so
    body and head keypoints survive while the identity changes."""
    from clinrelease.verify.reid import face_locator

    image, points = donor
    out = []
    for index, frame in enumerate(frames):
        frame = frame.copy()
        for face in analysis.faces_in_frame(index):
            row = face_locator().locate(frame, face.box)
            if row is None:
                continue
            target = row[4:14].reshape(5, 2)
            matrix, _ = cv2.estimateAffinePartial2D(points, target)
            warped = cv2.warpAffine(image, matrix, (frame.shape[1], frame.shape[0]), flags=cv2.INTER_LINEAR)
            mask = np.zeros(frame.shape[:2], np.uint8)
            x, y, w, h = row[:4]
            cv2.ellipse(mask, (int(x + w / 2), int(y + h * 0.55)), (int(w * 0.48), int(h * 0.6)), 0, 0, 360, 255, -1)
            ys, xs = np.nonzero(mask)
            center = (int((xs.min() + xs.max()) / 2), int((ys.min() + ys.max()) / 2))
            frame = cv2.seamlessClone(warped, frame, mask, center, cv2.NORMAL_CLONE)
        out.append(frame)
    return out


def shaken_hand_frames(count: int = 60, hz: float = 5.0, pixels: float = 6.0) -> list[np.ndarray]:
    """again.mkv's first frame (the signer's right hand raised at the chest) moved side to side by
    ``pixels`` at ``hz`` in 30 fps frames: real pixels with a known tremor (no shared clip holds one;
    a signing hand's own movement is not repeatable enough to measure)."""
    base = read_frames(require_media("asl/again.mkv"), 1)[0]
    rows, columns = base.shape[:2]
    return [
        cv2.warpAffine(base, np.float32([[1, 0, pixels * np.sin(2 * np.pi * hz * k / 30)], [0, 1, 0]]), (columns, rows), borderMode=cv2.BORDER_REPLICATE)
        for k in range(count)
    ]


def require_media(relpath: str) -> Path:
    """A file of ../shared/media, or skip the calling test with the reason."""
    import pytest

    path = SHARED_MEDIA / relpath
    if not path.is_file():
        pytest.skip(f"shared media {path} is not present (a fresh clone without ../shared/media)")
    return path


def t1_donor(index: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Face ``index`` (YuNet order) of insightface's t1.jpg group photo as a swap donor."""
    from clinrelease.models import model_path
    from clinrelease.verify.reid import face_locator

    image = cv2.imread(str(model_path("sample_faces_t1")))[:, :, ::-1].copy()
    row = face_locator().detect(image)[index]
    return image, row[4:14].reshape(5, 2)


def checks_only(*, text: bool = False, **verify):
    """The decision table of a profile that verifies only what ``verify`` sets (``VerifySettings``
    fields), plus burned-in text when ``text``: a verdict that depends on those checks alone."""
    from clinrelease.profiles import KeypointThresholds, OcrSettings, Profile, VerifySettings
    from clinrelease.verify.decision import checks_for

    settings = dict(recognizers={}, gallery=None, keypoints=KeypointThresholds(), face_realism=None, endpoints=None,
                    ocr=OcrSettings(enabled=text), leak_scan=False, residual_faces=False)  # fmt: skip
    settings.update(verify)
    return [c for c in checks_for(Profile(name="only", verify=VerifySettings(**settings)), text=text) if c.group not in ("header", "frames")]


def profile_checks(name: str, *groups: str):
    """The shipped profile ``name``'s checks of ``groups`` only."""
    from clinrelease.profiles import load_profile
    from clinrelease.verify.decision import checks_for

    return [c for c in checks_for(load_profile(name)) if c.group in groups]
