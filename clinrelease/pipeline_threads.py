"""A small thread pipeline for frame streams: run a producer ahead of its consumer, in order.

Decoding (PyAV), the face models (mediapipe, OpenCV DNN) and encoding (x264) all release the GIL
for their heavy parts, so a decode -> process -> encode chain overlaps well on a few cores when each
stage pulls from the one before through a bounded queue: ``encode(threaded(process(threaded(decode))))``.

:func:`threaded` keeps the generator contract of the stage it wraps: items come out in order, an
exception raised by the producer is raised in the consumer at the same position, and closing the
consumer (or dropping it) stops the producer thread. The queue is bounded, so memory holds at most
``depth`` items per stage however long the stream is.

:class:`StageClock` adds up the seconds each stage spends working, for per-stage breakdowns in the
benchmarks (library code takes an optional clock and never prints).
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

_DONE = object()


@dataclass
class _Failure:
    error: BaseException


def _put(q: queue.Queue, stop: threading.Event, item: object) -> bool:
    """A bounded put that gives up when the consumer has gone away."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.05)
            return True
        except queue.Full:
            continue
    return False


def _produce(source: Iterable[object], q: queue.Queue, stop: threading.Event) -> None:
    iterator = iter(source)
    try:
        for item in iterator:
            if not _put(q, stop, item):
                break
        else:
            _put(q, stop, _DONE)
    except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
        _put(q, stop, _Failure(exc))
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()  # runs the source generator's finally blocks (closes containers) in this thread


class ThreadedIterator(Generic[T]):
    """Iterator over ``source``, whose items are produced ahead by a daemon thread.

    Use :func:`threaded` to make one. ``close()`` (also called by ``with`` and on garbage collection)
    stops the producer and closes ``source`` when it is a generator.
    """

    def __init__(self, source: Iterable[T], depth: int = 4, name: str = "stage") -> None:
        if depth < 1:
            raise ValueError(f"depth must be at least 1, got {depth}")
        self._queue: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._finished = False
        # the thread must not hold this object, so that dropping the consumer stops the producer
        self._thread = threading.Thread(
            target=_produce, args=(source, self._queue, self._stop), name=f"clinrelease-{name}", daemon=True
        )
        self._thread.start()

    def __iter__(self) -> ThreadedIterator[T]:
        return self

    def __next__(self) -> T:
        if self._finished:
            raise StopIteration
        item = self._queue.get()
        if item is _DONE:
            self._finished = True
            self._thread.join()
            raise StopIteration
        if isinstance(item, _Failure):
            self._finished = True
            self._thread.join()
            raise item.error
        return item  # type: ignore[return-value]

    def close(self) -> None:
        """Stop the producer thread and wait for it (it finishes the item it is working on)."""
        self._finished = True
        self._stop.set()
        # drain, so a producer blocked on a full queue sees the stop flag at once
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        if self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> ThreadedIterator[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        stop = getattr(self, "_stop", None)  # absent when __init__ refused its arguments
        if stop is not None:
            stop.set()


def threaded(source: Iterable[T], depth: int = 4, name: str = "stage") -> ThreadedIterator[T]:
    """Produce the items of ``source`` in a background thread, ``depth`` items ahead of the consumer.

    Parameters
    ----------
    source:
        Any iterable (typically a frame generator); it is iterated in the new thread only.
    depth:
        Queue size: how many items may wait between the two threads (bounds memory).
    name:
        Thread name suffix, for profilers and debuggers.

    Returns
    -------
    ThreadedIterator
        Yields the items of ``source`` in order; re-raises the producer's exception where it
        happened; ``close()`` stops the producer early.
    """
    return ThreadedIterator(source, depth=depth, name=name)


@dataclass
class StageClock:
    """Seconds of work per named stage (thread-safe), for per-stage breakdowns."""

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, stage: str, seconds: float, calls: int = 1) -> None:
        """Add ``seconds`` of work to ``stage``."""
        with self._lock:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
            self.calls[stage] = self.calls.get(stage, 0) + calls

    @contextmanager
    def time(self, stage: str) -> Iterator[None]:
        """Time the body of a ``with`` block as work of ``stage``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(stage, time.perf_counter() - start)


def timed(source: Iterable[T], clock: StageClock | None, stage: str) -> Iterator[T]:
    """Yield the items of ``source``, adding the time spent producing each one to ``clock[stage]``."""
    iterator = iter(source)
    if clock is None:
        yield from iterator
        return
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            return
        finally:
            clock.add(stage, time.perf_counter() - start, calls=0)
        clock.add(stage, 0.0)
        yield item


#: intra-op threads for torch's CPU kernels (the dlib recognizer's network); the environment
#: variable CLINRELEASE_TORCH_THREADS sets another number
TORCH_THREADS = 1


def limit_torch_threads() -> int:
    """Give torch's CPU kernels :data:`TORCH_THREADS` threads (or CLINRELEASE_TORCH_THREADS); returns it.

    torch starts one intra-op thread per core, and they spin-wait on each other: beside the release's
    own decode and encode threads (or on a loaded machine) one thread lost its core and the rest spun.
    Measured on the 2-core machine under load: the patient's surrogate screening (24 dlib embeddings)
    took 74 s wall and 8.6 s CPU with torch's 2 threads, 27 s and 2.3 s with one, same decision.
    """
    import os

    import torch

    count = int(os.environ.get("CLINRELEASE_TORCH_THREADS", TORCH_THREADS))
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count
