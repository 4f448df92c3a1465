"""One verification pass: the original and the released video decoded once each, every check fed
from that one walk.

Each check stays the plain function it is (``verify_reid(original_frames, released_frames, ...)``,
``scan_text(released_frames, ...)``): the walk runs it on its own thread over views of the walk's
frames and hands each frame to every check. A check names the shared models it calls (``uses``:
the pose graph, the face mesh, the recognizers — none of them thread-safe); checks that share none
may work on a frame at the same moment (up to ``lanes`` of them, one per core: a check is started
on the frame as soon as a lane is free and no running check shares its models), checks that share
one, or that name nothing, never do. Their results stay what a check run alone gives,
memory holds a bounded window of frames however long the video is, and each video is decoded once,
ahead of the checks on a thread of its own.

A check that stops reading early (the contact sheet needs the first few picks only) is simply fed
no more. A check's exception is raised by :meth:`FrameWalk.run` after the walk, or at once when
the two videos turn out to differ in length (``zip(strict=True)``'s ValueError, as a check
walking them alone would raise).
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

ORIGINAL, RELEASED = "original", "released"

#: frames one side of a check may be read ahead of the other before it counts as a check that
#: reads one stream only (which would hold every frame of the other in memory)
_SKEW_LIMIT = 64

_END = object()


class _Aborted(Exception):
    """Raised inside a check whose walk stopped (the other check's or the decoder's error wins)."""


@dataclass
class _Check:
    name: str
    fn: Callable[..., Any]
    sides: tuple[str, ...]
    inbox: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=1))
    #: where the check reports (the walk's one queue: (check, kind, value))
    outbox: queue.Queue = field(default_factory=queue.Queue)
    buffers: dict[str, deque] = field(default_factory=lambda: {ORIGINAL: deque(), RELEASED: deque()})
    ended: bool = False
    finished: bool = False
    result: Any = None
    error: BaseException | None = None
    #: the shared models the check calls; None: it may share anything, so it runs alone
    uses: frozenset[str] | None = None
    #: the check's own working time (on its thread, from a frame handed to it to its asking for the next)
    seconds: float = 0.0
    _since: float = 0.0

    def conflicts(self, other: _Check) -> bool:
        return self.uses is None or other.uses is None or bool(self.uses & other.uses)

    def view(self, side: str) -> Iterable[Any]:
        """The frames of ``side`` as this check's thread sees them."""
        while True:
            buffer = self.buffers[side]
            if buffer:
                yield buffer.popleft()
                continue
            if self.ended:
                return
            self.seconds += time.perf_counter() - self._since
            self.outbox.put((self, "want", None))
            item = self.inbox.get()
            self._since = time.perf_counter()
            if item is _END:
                self.ended = True
                return
            if isinstance(item, _Aborted):
                raise item
            original, released = item
            self.buffers[ORIGINAL].append(original)
            self.buffers[RELEASED].append(released)
            other = RELEASED if side == ORIGINAL else ORIGINAL
            if other in self.sides and len(self.buffers[other]) > _SKEW_LIMIT:
                raise RuntimeError(f"check {self.name} reads its {side} frames {_SKEW_LIMIT} ahead of the {other} ones")
            if other not in self.sides:
                self.buffers[other].clear()

    def body(self) -> None:
        self._since = time.perf_counter()
        try:
            outcome = ("done", self.fn(*(self.view(side) for side in self.sides)))
        except BaseException as exc:  # noqa: BLE001 - handed to the walk, raised there
            outcome = ("failed", exc)
        self.seconds += time.perf_counter() - self._since
        self.outbox.put((self, *outcome))

    def reported(self, kind: str, value: Any) -> None:
        """The check wants its next frame (``want``), or is ``done`` or ``failed``."""
        if kind == "done":
            self.finished, self.result = True, value
        elif kind == "failed":
            self.finished, self.error = True, value


class FrameWalk:
    """Register checks with :meth:`add`, then :meth:`run` them all on one decode of each video.

    ``original`` and ``released`` are frame iterables (``VideoSource.frames()`` or the source
    itself); a side no check reads is not decoded at all. ``depth`` frames per video are decoded
    ahead of the checks; at most ``lanes`` checks work at one moment (default: the CPU count, up to 4).
    """

    def __init__(self, original: Iterable[Any] | None, released: Iterable[Any] | None, depth: int = 4, lanes: int | None = None) -> None:
        self.original, self.released, self.depth = original, released, depth
        self.lanes = max(1, lanes if lanes is not None else min(4, os.cpu_count() or 1))
        self._checks: list[_Check] = []
        #: seconds per check (its own work) and waiting for the decoders, after run()
        self.seconds: dict[str, float] = {}

    def add(self, name: str, fn: Callable[..., Any], sides: Iterable[str] = (ORIGINAL, RELEASED), uses: Iterable[str] | None = None) -> None:
        """``fn`` gets one frame iterable per side, in the order of ``sides``; its return value is
        the check's result under ``name``. ``uses`` names the shared models ``fn`` calls (see the
        module docstring); a check that names none (``()``) calls only models of its own, and one
        left at None runs alone."""
        sides = tuple(sides)
        if not sides or any(s not in (ORIGINAL, RELEASED) for s in sides):
            raise ValueError(f"check {name}: sides must be {ORIGINAL!r} and/or {RELEASED!r}, got {sides}")
        if any(c.name == name for c in self._checks):
            raise ValueError(f"check {name} is already registered")
        self._checks.append(_Check(name, fn, sides, uses=None if uses is None else frozenset(uses)))

    def later(self, name: str) -> Any:
        """A stand-in for check ``name``'s result, for a check registered after it that reads the
        result once its own frames have ended (checks finish in the order they were added)."""
        return _Later(self, name)

    def result(self, name: str) -> Any:
        check = next(c for c in self._checks if c.name == name)
        if not check.finished:
            raise RuntimeError(f"the result of check {name} was read before the check finished")
        return check.result

    def run(self) -> dict[str, Any]:
        """Walk both videos once; return each check's result by name."""
        from clinrelease.pipeline_threads import threaded

        needed = {s for c in self._checks for s in c.sides}
        streams = {}
        for side, frames in ((ORIGINAL, self.original), (RELEASED, self.released)):
            if side in needed:
                if frames is None:
                    raise ValueError(f"a check reads the {side} video, but the walk has none")
                streams[side] = threaded(frames, depth=self.depth, name=f"decode-{side}")
        reports: queue.Queue = queue.Queue()

        def wait() -> _Check:
            """The next check to report, once it has run until it wants a frame or is done."""
            check, kind, value = reports.get()
            check.reported(kind, value)
            return check

        def one_at_a_time(item: Any) -> None:
            for check in self._checks:
                if not check.finished:
                    check.inbox.put(item)
                    wait()

        for check in self._checks:
            check.outbox = reports
            threading.Thread(target=check.body, name=f"clinrelease-check-{check.name}", daemon=True).start()
            wait()
        decode = 0.0
        try:
            pairs = self._pairs(streams)
            while any(not c.finished for c in self._checks):
                start = time.perf_counter()
                item = next(pairs, _END)
                decode += time.perf_counter() - start
                if item is _END:
                    # in order: a check may read an earlier one's result once its frames have ended (later())
                    one_at_a_time(item)
                    break
                pending, running = [c for c in self._checks if not c.finished], []
                while pending or running:
                    for check in list(pending):
                        if len(running) < self.lanes and not any(check.conflicts(r) for r in running):
                            pending.remove(check)
                            running.append(check)
                            check.inbox.put(item)
                    running.remove(wait())
        except BaseException:
            # the videos differ in length, or a decoder failed: every waiting check stops, this error is raised
            one_at_a_time(_Aborted())
            raise
        finally:
            for stream in streams.values():
                stream.close()
        self.seconds = {"decode_wait": decode, **{c.name: c.seconds for c in self._checks}}
        for check in self._checks:
            if check.error is not None:
                raise check.error
        return {c.name: c.result for c in self._checks}

    @staticmethod
    def _pairs(streams: dict[str, Any]):
        from clinrelease.face.base import iter_pairs

        if len(streams) == 2:
            for _, original, released in iter_pairs(streams[ORIGINAL], streams[RELEASED]):
                yield original, released
        elif ORIGINAL in streams:
            for frame in streams[ORIGINAL]:
                yield frame, None
        else:
            for frame in streams[RELEASED]:
                yield None, frame


class _Later:
    def __init__(self, walk: FrameWalk, name: str) -> None:
        self._walk, self._name = walk, name

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._walk.result(self._name), attr)


# --------------------------------------------------------------------------------------------------
# the checks of one item, as run by ``clinrelease run`` and ``clinrelease verify``


@dataclass
class WalkPlan:
    """Which checks one verification pass runs, and how densely (None / empty: the check is off)."""

    sample_every: int = 5
    #: re-identification of every track's face, by these recognizers (runs whenever there is a face
    #: analysis: its search for untracked faces in the original needs none)
    recognizers: tuple[Any, ...] = ()
    #: the recognizer that searches the original for faces no track holds (name or recognizer)
    residual_recognizer: Any = "sface"
    model_dir: str | None = None
    #: faces on released frames that no anonymized track covers (needs the face analysis)
    residual_faces: bool = False
    #: where the text cleaner painted each frame (:meth:`clinrelease.verify.ocr.TextScan.painted_at`),
    #: so that the residual-face check tells a face-like pattern the paint made from a face
    painted: Callable[[int], Any] | None = None
    #: body keypoints; ``face``: face landmarks too; ``person``: the patient's body box per frame
    keypoints: bool = False
    face: bool = True
    person: Callable[[int], Any] | None = None
    #: the patient's face still reads as a face with their expression (needs the face analysis)
    realism: bool = False
    #: the patient's frames the realism check leaves out (blurred on purpose: no swap to judge)
    realism_skip: frozenset[int] = frozenset()
    #: clinical endpoints, name -> tolerance, sampled every ``endpoint_sample_every`` frames
    endpoints: dict = field(default_factory=dict)
    endpoint_sample_every: int | None = None
    fps: float = 30.0
    #: burned-in text left on the released frames, every ``text_every`` frames
    text_every: int | None = None
    text_min_score: float = 0.5


#: the shared models a check calls (:meth:`FrameWalk.add`'s ``uses``)
POSE, FACE_MESH, RECOGNIZERS = "pose", "face mesh", "recognizers"

Checks = dict[str, tuple[Callable[..., Any], tuple[str, ...], frozenset[str]]]


def plan_checks(plan: WalkPlan, analysis, realism: Any = None, prefetch: int | None = 0) -> Checks:
    """``plan``'s checks as name -> (function of the frames of ``sides``, sides, shared models it
    calls), in walk order.

    ``realism`` is the realism report the frame endpoints read (a walk's :meth:`FrameWalk.later`
    proxy, or the report of a realism check run before); ``prefetch`` is the decode-ahead of the
    checks that have one (0 in a walk: the walk decodes ahead). Endpoints that read only the realism
    series are not here (they need none of the frames; :func:`verify_frames` measures them after).
    """
    from clinrelease.verify.endpoints import ENDPOINTS

    checks: Checks = {}
    both = (ORIGINAL, RELEASED)
    faces = analysis is not None
    ahead = {} if prefetch is None else {"prefetch": prefetch}
    if faces:
        from clinrelease.verify.reid import verify_reid

        checks["reid"] = (lambda o, r: verify_reid(
            o, r, analysis, recognizers=list(plan.recognizers), sample_every=plan.sample_every, model_dir=plan.model_dir,
            residual_recognizer=plan.residual_recognizer, **ahead,
        ), both, frozenset({RECOGNIZERS}))  # fmt: skip
    if faces and plan.residual_faces:
        from clinrelease.face.pipeline import residual_faces

        # its detectors are built per thread (shared_detector)
        if plan.painted is None:
            checks["residual_faces"] = (lambda r: residual_faces(r, analysis, **ahead), (RELEASED,), frozenset())
        else:
            checks["residual_faces"] = (lambda o, r: residual_faces(r, analysis, originals=o, painted=plan.painted, **ahead), both, frozenset())
    if plan.keypoints:
        from clinrelease.verify.keypoints import verify_keypoints

        checks["keypoints"] = (
            lambda o, r: verify_keypoints(o, r, sample_every=plan.sample_every, face=plan.face, person=plan.person), both, frozenset({POSE, FACE_MESH})
        )
    if faces and plan.realism:
        from clinrelease.verify.realism import verify_realism

        checks["realism"] = (
            lambda o, r: verify_realism(o, r, analysis, sample_every=plan.sample_every, skip=plan.realism_skip), both, frozenset({FACE_MESH})
        )
    every = plan.endpoint_sample_every or plan.sample_every
    # endpoints from pose and hands read frames; the face endpoints only the realism series, which is
    # complete once the realism check has finished (so a face-only table is measured after the walk)
    if {ENDPOINTS[n].group for n in plan.endpoints if n in ENDPOINTS} - {"face"}:
        from clinrelease.verify.endpoints import verify_endpoints

        # hand trackers and a pose graph of its own
        checks["endpoints"] = (
            lambda o, r: verify_endpoints(o, r, plan.fps, plan.endpoints, sample_every=every, realism=realism), both, frozenset()
        )
    if plan.text_every:
        from clinrelease.verify.ocr import scan_text

        checks["text"] = (lambda r: scan_text(r, sample_every=plan.text_every, min_score=plan.text_min_score), (RELEASED,), frozenset({"ocr"}))
    return checks


def verify_frames(original: Iterable[Any], released: Iterable[Any], analysis, plan: WalkPlan, extra: dict[str, tuple] | None = None):
    """Run ``plan``'s checks on one walk of the two videos.

    ``extra`` adds the caller's own checks: name -> (function, sides[, shared models]), as
    :meth:`FrameWalk.add` (without the models named, the check runs alone).
    Returns the :class:`~clinrelease.verify.decision.ItemReports` (leaks and gallery not filled),
    the residual-face frame list (None when that check did not run), the extra checks' results
    and the seconds each check and the decoders took.
    """
    from clinrelease.verify.decision import ItemReports

    walk = FrameWalk(original, released)
    realism = analysis is not None and plan.realism
    checks = plan_checks(plan, analysis, walk.later("realism") if realism else None, prefetch=0)
    framed = "endpoints" in checks
    for name, (fn, sides, *uses) in {**checks, **(extra or {})}.items():
        walk.add(name, fn, sides, uses=uses[0] if uses else None)
    results = walk.run()
    if plan.endpoints and not framed:
        from clinrelease.verify.endpoints import verify_endpoints

        every = plan.endpoint_sample_every or plan.sample_every
        results["endpoints"] = verify_endpoints([], [], plan.fps, plan.endpoints, sample_every=every, realism=results.get("realism"))
    reports = ItemReports(
        reid=results.get("reid"), keypoints=results.get("keypoints"), realism=results.get("realism"),
        endpoints=results.get("endpoints"), text=results.get("text"), residual=results.get("residual_faces"),
    )  # fmt: skip
    return reports, reports.residual_frames, {k: results[k] for k in extra or {}}, walk.seconds
