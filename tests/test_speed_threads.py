"""The decode/process/encode thread helper: order, errors, early close, bounded look-ahead, clocks."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from clinrelease.pipeline_threads import StageClock, threaded, timed


def test_items_come_out_in_order_from_another_thread():
    seen_threads = set()

    def produce():
        for i in range(200):
            seen_threads.add(threading.current_thread().name)
            yield i

    assert list(threaded(produce(), depth=3, name="decode")) == list(range(200))
    assert seen_threads == {"clinrelease-decode"}


def test_producer_error_is_raised_at_its_position():
    def produce():
        yield 1
        yield 2
        raise ValueError("corrupt frame 3")

    out = []
    with pytest.raises(ValueError, match="corrupt frame 3"):
        for item in threaded(produce()):
            out.append(item)
    assert out == [1, 2]


def test_chained_stages_keep_order_and_propagate_errors():
    def decode():
        for i in range(50):
            yield np.full((4, 4, 3), i, np.uint8)

    def process(frames):
        for frame in frames:
            if frame[0, 0, 0] == 40:
                raise RuntimeError("model failed on frame 40")
            yield frame + 1

    got = []
    with pytest.raises(RuntimeError, match="frame 40"):
        for frame in threaded(process(threaded(decode(), name="decode")), name="process"):
            got.append(int(frame[0, 0, 0]))
    assert got == list(range(1, 41))


def test_close_stops_the_producer_and_runs_its_cleanup():
    produced = []
    cleaned = threading.Event()

    def produce():
        try:
            for i in range(10_000):
                produced.append(i)
                yield i
        finally:
            cleaned.set()

    it = threaded(produce(), depth=2)
    assert next(it) == 0
    it.close()
    assert cleaned.wait(2.0)
    assert len(produced) < 10  # stopped early, not run to the end
    with pytest.raises(StopIteration):
        next(it)


def test_look_ahead_is_bounded_by_depth():
    produced = []

    def produce():
        for i in range(100):
            produced.append(i)
            yield i

    it = threaded(produce(), depth=3)
    assert next(it) == 0
    time.sleep(0.3)  # let the producer run as far as the queue allows
    # one taken, three queued, one in hand waiting for room
    assert len(produced) <= 1 + 3 + 1
    it.close()


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="depth"):
        threaded([1, 2], depth=0)


def test_stage_clock_and_timed_add_up_work_per_stage():
    clock = StageClock()

    def slow():
        for i in range(3):
            time.sleep(0.02)
            yield i

    assert list(timed(slow(), clock, "decode")) == [0, 1, 2]
    with clock.time("render"):
        time.sleep(0.01)
    assert clock.calls == {"decode": 3, "render": 1}
    assert 0.05 < clock.seconds["decode"] < 1.0 and clock.seconds["render"] >= 0.01
    # no clock: a plain pass-through
    assert list(timed(iter([5, 6]), None, "x")) == [5, 6]


def test_dropping_an_unfinished_consumer_stops_the_producer():
    import gc

    cleaned = threading.Event()

    def produce():
        try:
            for i in range(10_000):
                yield i
        finally:
            cleaned.set()

    it = threaded(produce(), depth=2, name="dropped")
    next(it)
    del it
    gc.collect()
    assert cleaned.wait(2.0)  # the producer saw the stop flag and closed its source


def test_the_recognizer_network_runs_torch_on_one_thread_unless_told_otherwise(monkeypatch):
    import torch

    from clinrelease.models import model_path
    from clinrelease.pipeline_threads import limit_torch_threads
    from clinrelease.verify.dlib_net import load_dlib_resnet

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        load_dlib_resnet.cache_clear()
        load_dlib_resnet(str(model_path("dlib_face_recognition")))
        assert torch.get_num_threads() == 1
        monkeypatch.setenv("CLINRELEASE_TORCH_THREADS", "2")
        assert limit_torch_threads() == 2 and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
