"""Video sources: DICOM video objects and plain container files, decoded lazily to RGB frames.

Every later stage streams frames through :func:`open_video`. Frames are ``numpy.uint8`` arrays of
shape ``(rows, columns, 3)`` in RGB order, yielded one at a time so that a long video never has to
fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from clinrelease.errors import InputError


@dataclass(frozen=True)
class VideoInfo:
    """What a video source holds, read from its header or container without decoding frames."""

    path: Path
    #: "dicom" for a DICOM object, "container" for MP4/MKV/AVI and other plain video files
    kind: str
    frames: int
    fps: float
    rows: int
    columns: int
    photometric_interpretation: str = "RGB"
    sop_class_uid: str | None = None
    transfer_syntax_uid: str | None = None
    codec: str | None = None
    #: container-level metadata (title, comment, creation_time, location, ...) that may carry PHI
    container_metadata: dict[str, str] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        return self.frames / self.fps if self.fps else 0.0


class VideoSource:
    """A lazily decoded video. Use :func:`open_video` to make one."""

    def __init__(self, info: VideoInfo) -> None:
        self.info = info

    def frames(self) -> Iterator[np.ndarray]:
        """Yield every frame, in order, as an RGB ``uint8`` array; each call starts from frame 0."""
        raise NotImplementedError  # pragma: no cover - abstract

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.frames()


class ContainerVideo(VideoSource):
    """A plain video file (MP4, MKV, AVI, ...) decoded with PyAV."""

    def frames(self) -> Iterator[np.ndarray]:
        import av

        try:
            with av.open(str(self.info.path)) as container:
                stream = container.streams.video[0]
                stream.thread_type = "AUTO"
                for frame in container.decode(stream):
                    yield frame.to_ndarray(format="rgb24")
        except av.error.FFmpegError as exc:
            raise InputError(f"cannot decode video stream: {exc}", self.info.path) from exc


def read_container_info(path: Path) -> VideoInfo:
    """Read a plain video file's stream parameters and container metadata without decoding."""
    import av

    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, OSError) as exc:
        raise InputError(f"not a readable video file: {exc}", path) from exc
    with container:
        if not container.streams.video:
            raise InputError("the file holds no video stream", path)
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate or Fraction(0)
        fps = float(rate)
        frames = stream.frames
        if not frames and stream.duration is not None and stream.time_base is not None and fps:
            frames = int(round(float(stream.duration * stream.time_base) * fps))
        if not frames and container.duration and fps:
            frames = int(round(container.duration / 1_000_000 * fps))
        metadata = {str(k): str(v) for k, v in container.metadata.items()}
        metadata.update({f"stream:{k}": str(v) for k, v in stream.metadata.items()})
        return VideoInfo(
            path=path,
            kind="container",
            frames=int(frames or 0),
            fps=fps,
            rows=stream.codec_context.height,
            columns=stream.codec_context.width,
            codec=stream.codec_context.name,
            container_metadata=metadata,
        )


def open_video(path: str | Path) -> VideoSource:
    """Open a DICOM video object or a plain video file for lazy decoding.

    Raises
    ------
    InputError
        When the file is missing, unreadable, holds no video, or uses a syntax that cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("no such file", path)
    return ContainerVideo(read_container_info(path))
