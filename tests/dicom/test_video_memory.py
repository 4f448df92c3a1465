"""A long 1080p H.264 stream is written and decoded with bounded memory."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from _video_helpers import BENCH

FRAMES = 150  # 5 s of 1080p: 930 MB of decoded RGB, far more than the allowed growth


def _probe(*args: str) -> dict:
    result = subprocess.run(
        [sys.executable, str(BENCH / "_rss_probe.py"), *args], capture_output=True, text=True, timeout=240, check=True
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_long_1080p_stream_streams_with_bounded_memory(tmp_path):
    path = tmp_path / "long.dcm"
    encoded = _probe("encode", str(path), str(FRAMES), "1080", "1920", "ultrafast")
    decoded = _probe("decode", str(path))
    assert encoded["frames"] == decoded["frames"] == FRAMES
    frame_mib = 1080 * 1920 * 3 / 2**20
    # peak RSS after frame 10 versus at the end: growth stays under ~12 frames' worth while the
    # whole decoded video is 150 frames (and the encoded stream is not loaded either)
    assert decoded["end_peak_mib"] - decoded["warm_peak_mib"] < 12 * frame_mib, decoded
    assert encoded["end_peak_mib"] - encoded["warm_peak_mib"] < 24 * frame_mib, encoded
    assert decoded["end_peak_mib"] < 400, decoded
