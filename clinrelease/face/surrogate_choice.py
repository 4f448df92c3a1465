"""Which surrogate of the key's sequence a patient gets, decided once per patient and kept with the key.

A key's first surrogate for a patient can land close to that patient (a random key once gave dlib
0.58 against the 0.6 limit, another SFace 0.360 against 0.363), and a site cannot re-roll its key
per patient. So the first surrogates of the keyed sequence (:func:`~clinrelease.face.surrogates.
surrogate_seed`) are put on a few frames of the patient's own face and compared with the original
by the profile's recognizers; the first one that stays a margin away from every threshold is the
patient's. The decision is stored in the key folder (:data:`CHOICES_FILE`, HMAC'd with the release
key), so every item of the patient keeps that surrogate across runs, shards and later releases
with the same key.
"""

from __future__ import annotations

import fcntl
import hmac
import json
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from clinrelease.crypto.kdf import derive
from clinrelease.errors import ConfigError, MissingModelError
from clinrelease.files import write_json_atomic

#: the decisions' file, in the key folder
CHOICES_FILE = "surrogate-choices.json"
#: how far (in the recognizer's own units) a candidate must stay from each threshold: dlib distance
#: at least threshold + MARGIN, SFace/ArcFace cosine at most threshold - MARGIN
MARGIN = 0.1
#: frames of the patient's face the candidates are tried on
SCREEN_FRAMES = 4
#: candidates of the sequence drawn with the profile's own swap settings. With the surrogate's detail
#: toned down to the video's (:data:`~clinrelease.face.swap_plan.DETAIL_GAIN`) fewer candidates clear
#: the margin: on the six shared clips under three keys, 8 left one patient matched, 16 none
#: (bench/surrogate_keys.py)
MAX_CANDIDATES = 16
#: what the counters from :data:`MAX_CANDIDATES` on change in the swap: the face shape all the
#: surrogate's, brows at the surrogate's own angle included (profiles that keep some of the patient's
#: shape for realism give that up for a patient none of whose first candidates clears the margin;
#: SFace still saw the patient through the shape)
STRONGER_SWAP = {"identity_strength": 1.0, "brow_turn": 90.0}
#: candidates of that stronger stage, tried only when no earlier one clears the margin
STRONGER_CANDIDATES = 8
#: share of the margin a candidate that cleared the screening frames must also keep on the wider
#: frames (:data:`RANK_FRAMES`) before it is taken
CONFIRM_SHARE = 0.5
#: share of the profile's mouth-opening limit (``face_realism.mouth_opening_change_max``) a candidate's
#: rendered faces may change the patient's mouth by: the screening renders without the release's
#: encoder, and the candidates that drew a pressed grimace over eat.mkv's open smile changed it by
#: 0.10-0.14 where the others kept it within 0.03
EXPRESSION_SHARE = 0.8
#: the mouth-opening limit the screening prefers surrogates by where the profile judges face realism
#: but not the mouth (a preference only: a release is not quarantined for it)
PREFERRED_MOUTH_LIMIT = 0.05
#: frames the candidates are confirmed and ranked on, on re-id's sampling grid: the farthest on a few
#: frames was often not the farthest on the frames verification samples (carphone under random keys),
#: and a candidate confirmed between the grid's frames was matched on one of them (SFace)
RANK_FRAMES = 16


@dataclass
class Candidate:
    """One surrogate of the sequence, tried on the patient: each recognizer's closest value, and
    how the rendered face changed the patient's mouth opening."""

    counter: int
    closest: dict[str, float]
    too_close: bool
    #: why this counter has no surrogate (a generator that vetted no face for it), else None
    refused: str | None = None
    #: median change of the mouth opening over the frames it was rendered on (None: not measured)
    mouth_change: float | None = None
    #: the rendered face did not keep the patient's mouth (:data:`EXPRESSION_SHARE` of the profile's limit)
    expression_changed: bool = False

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"counter": self.counter, "closest": self.closest, "too_close": self.too_close}
        if self.mouth_change is not None:
            doc["mouth_opening_change"] = self.mouth_change
        if self.expression_changed:
            doc["expression_changed"] = True
        return doc if self.refused is None else {**doc, "refused": self.refused}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Candidate:
        change = doc.get("mouth_opening_change")
        return cls(
            int(doc["counter"]), {k: float(v) for k, v in doc["closest"].items()}, bool(doc["too_close"]), doc.get("refused"),
            None if change is None else float(change), bool(doc.get("expression_changed", False)),
        )  # fmt: skip

    @property
    def usable(self) -> bool:
        """Clear of every recognizer's margin and keeping the patient's mouth."""
        return self.refused is None and not self.too_close and not self.expression_changed


@dataclass
class SurrogateDecision:
    """The patient's counter, how it was reached (``measured`` now or ``stored`` earlier) and the
    candidates that were tried (distances only, never embeddings). ``attempt``: for a generated
    surrogate, the latent of that counter's face (the first that passed the vetting with the
    patient's embeddings; :class:`~clinrelease.face.generator.GeneratorPool`)."""

    counter: int
    decided: str
    margin: float
    tried: list[Candidate] = field(default_factory=list)
    attempt: int | None = None
    #: frames the candidates were last compared on (the screening frames and the wider ones that confirm or rank them)
    frames: int | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = {"counter": self.counter, "decided": self.decided, "margin": self.margin, "tried": [c.to_dict() for c in self.tried]}
        if swap_settings(self.counter):
            # the auditor's answer to "why does this patient's face differ from the profile's swap"
            doc["swap"] = swap_settings(self.counter)
        if self.frames is not None:
            doc["frames"] = self.frames
        return doc if self.attempt is None else {**doc, "attempt": self.attempt}

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], decided: str) -> SurrogateDecision:
        tried = [Candidate.from_dict(c) for c in doc["tried"]]
        attempt = None if doc.get("attempt") is None else int(doc["attempt"])
        frames = None if doc.get("frames") is None else int(doc["frames"])
        return cls(int(doc["counter"]), decided, float(doc["margin"]), tried, attempt, frames)


def swap_settings(counter: int) -> dict[str, float]:
    """The swap settings the ``counter``-th surrogate of the sequence is drawn with, on top of the
    profile's: :data:`STRONGER_SWAP` from :data:`MAX_CANDIDATES` on, none before."""
    if counter < 0:
        raise ConfigError(f"the surrogate counter must not be negative, got {counter}")
    return dict(STRONGER_SWAP) if counter >= MAX_CANDIDATES else {}


def headroom(value: float, threshold: float, higher_is_same: bool) -> float:
    """How far a similarity (``higher_is_same``) or distance stays on the "different person" side of
    ``threshold``; negative: "same person"."""
    return threshold - value if higher_is_same else value - threshold


def too_close(value: float, threshold: float, higher_is_same: bool, margin: float) -> bool:
    """Whether a similarity (``higher_is_same``) or distance lies within ``margin`` of "same person"."""
    return headroom(value, threshold, higher_is_same) < margin


def screen(
    samples: list[tuple[np.ndarray, Any]],
    anonymizer_for: Callable[[int], Any],
    track_id: int,
    analysis,
    recognizers: Mapping[str, tuple[Any, float]],
    margin: float = MARGIN,
    max_candidates: int = MAX_CANDIDATES + STRONGER_CANDIDATES,
    more_samples: Sequence[tuple[np.ndarray, Any]] = (),
    mouth_limit: float | None = None,
) -> SurrogateDecision:
    """Try counters 0, 1, ... on ``samples`` (original frame, the patient's tracked face there).

    ``anonymizer_for(counter)`` gives the patient's anonymizer drawing that counter's surrogate (with
    :func:`swap_settings` of that counter: the stronger stage follows the plain one);
    ``recognizers`` maps a name to (recognizer, the profile's threshold). The first candidate that
    no recognizer finds within ``margin`` of its threshold on any sample, and within
    ``CONFIRM_SHARE * margin`` on any of ``more_samples`` (more of the patient's frames; faces
    already in ``samples`` are not compared twice), is taken, unless its rendered faces change the
    patient's mouth opening (median over those frames) by more than ``EXPRESSION_SHARE *
    mouth_limit`` (the profile's face-realism limit; None: not measured). When none of
    ``max_candidates`` is, every candidate is compared on all of them and the one farthest from its
    thresholds is taken, among those that keep the mouth and that no recognizer matched where there
    are any (verification still judges it). A counter that has no surrogate (a generator that
    vetted no face for it) is passed over.

    Raises
    ------
    ConfigError
        When no counter of ``max_candidates`` has a surrogate.
    """
    tried: list[Candidate] = []
    anonymizers: dict[int, Any] = {}
    measures: dict[int, _Measured] = {}
    seen = {face.frame_index for _, face in samples}
    # every candidate is compared with the same original faces: embed and mesh those once
    extra = _references([(frame, face) for frame, face in more_samples if face.frame_index not in seen], mouth_limit is not None)
    samples = _references(samples, mouth_limit is not None)
    widened: set[int] = set()

    def close_to(closest: Mapping[str, float], share: float = 1.0) -> bool:
        return any(too_close(v, recognizers[n][1], recognizers[n][0].higher_is_same, share * margin) for n, v in closest.items())

    def judged(candidate: Candidate) -> Candidate:
        if mouth_limit is not None and candidate.mouth_change is not None:
            candidate.expression_changed = abs(candidate.mouth_change) > EXPRESSION_SHARE * mouth_limit
        return candidate

    for counter in range(max_candidates):
        try:
            anonymizer = anonymizer_for(counter)
            anonymizer.prepare(analysis, track_id)
        except MissingModelError:
            raise
        except ConfigError as exc:
            tried.append(Candidate(counter, {}, True, refused=exc.message))
            continue
        anonymizers[counter] = anonymizer
        measured = _measure(anonymizer, samples, recognizers)
        close = close_to(measured.closest)
        if not close and extra:
            # the screening frames are few: a surrogate that clears them may still be the patient on
            # another frame (book.mkv tilting -40..40 degrees: dlib 0.578 on a frame between two
            # screened ones that cleared the margin)
            measured = _measure(anonymizer, extra, recognizers, measured)
            widened.add(counter)
            close = close_to(measured.closest, CONFIRM_SHARE)
        measures[counter] = measured
        candidate = judged(Candidate(counter, measured.closest, close, mouth_change=measured.mouth_change))
        tried.append(candidate)
        if candidate.usable:
            return SurrogateDecision(counter, "measured", margin, tried, frames=len(samples) + len(extra) if extra else None)
    if not anonymizers:
        raise ConfigError(f"none of the first {max_candidates} surrogates of the key's sequence could be made: {tried[-1].refused}")
    frames = None
    if extra:
        frames = len(samples) + len(extra)
        for candidate in tried:
            if candidate.refused is None and candidate.counter not in widened:
                measured = _measure(anonymizers[candidate.counter], extra, recognizers, measures[candidate.counter])
                candidate.closest, candidate.mouth_change = measured.closest, measured.mouth_change
                judged(candidate)
    made = [c for c in tried if c.refused is None]
    kept = [c for c in made if not c.expression_changed and _headroom(c, recognizers) > 0]
    best = max(kept or made, key=lambda c: _headroom(c, recognizers))
    return SurrogateDecision(best.counter, "measured", margin, tried, frames=frames)


@dataclass
class _Sample:
    frame: np.ndarray
    face: Any
    reference: Any
    #: the patient's mouth opening there (:class:`~clinrelease.verify.realism.MouthReference`), when measured
    mouth: Any = None


def _references(pairs: Iterable[tuple[np.ndarray, Any]], mouth: bool) -> list[_Sample]:
    from clinrelease.verify.realism import MouthReference
    from clinrelease.verify.reid import FaceReference

    out = []
    for frame, face in pairs:
        reference = FaceReference(frame, face)
        out.append(_Sample(frame, face, reference, MouthReference(reference) if mouth else None))
    return out


@dataclass
class _Measured:
    """What one candidate's renderings gave so far: each recognizer's value closest to "same
    person", and the mouth-opening changes."""

    closest: dict[str, float] = field(default_factory=dict)
    changes: list[float] = field(default_factory=list)

    @property
    def mouth_change(self) -> float | None:
        # rounded as the recognizers' values are: the decision is stored and read back as JSON
        return round(float(np.median(self.changes)), 4) if self.changes else None


def _measure(anonymizer, samples: list[_Sample], recognizers: Mapping[str, tuple[Any, float]], start: _Measured | None = None) -> _Measured:
    """``start`` extended with ``anonymizer``'s renderings of ``samples``."""
    measured = _Measured() if start is None else _Measured(dict(start.closest), list(start.changes))
    closest = measured.closest
    for sample in samples:
        out = anonymizer.anonymize_frame(np.array(sample.frame, copy=True), [sample.face])
        for name, (rec, _) in recognizers.items():
            cmp = sample.reference.compare(rec, out)
            if cmp is not None:
                sim = round(float(cmp[0]), 4)
                closest[name] = sim if name not in closest else rec.more_similar(closest[name], sim)
        change = None if sample.mouth is None else sample.mouth.change(out)
        if change is not None:
            measured.changes.append(change)
    return measured


def _headroom(candidate: Candidate, recognizers: Mapping[str, tuple[Any, float]]) -> float:
    """The smallest distance of a candidate from any threshold, on the "another person" side."""
    room = [(t - v) if rec.higher_is_same else (v - t) for n, v in candidate.closest.items() for rec, t in [recognizers[n]]]
    return min(room, default=0.0)


def spread(samples: list, count: int = SCREEN_FRAMES) -> list:
    """Up to ``count`` of ``samples``, evenly spaced (the first and the last among them)."""
    if len(samples) <= count:
        return list(samples)
    return [samples[i] for i in sorted({int(round(v)) for v in np.linspace(0, len(samples) - 1, count)})]


def patient_samples(frames: Iterable[np.ndarray], analysis, count: int = SCREEN_FRAMES, every: int = 1) -> list[tuple[np.ndarray, Any]]:
    """Up to ``count`` frames spread over the patient's track where the face has a mesh, with the face;
    only frames on the grid of every ``every``-th frame (where re-identification samples) while the
    track has any there."""
    patient = analysis.patient
    if patient is None:
        return []
    usable = [i for i in patient.frame_indices if patient.faces[i].landmarks is not None]
    usable = [i for i in usable if i % every == 0] or usable
    if not usable:
        return []
    wanted = sorted({usable[int(i)] for i in np.linspace(0, len(usable) - 1, min(count, len(usable)))})
    out = []
    for index, frame in enumerate(frames):
        if index in wanted:
            out.append((frame, patient.faces[index]))
        if index >= wanted[-1]:
            break
    return out


class ChoiceStore:
    """The key folder's table of decisions, pseudonym -> decision, HMAC'd with the release key.

    Reads and writes happen under an exclusive ``flock`` on a lock file beside it, so shards running
    side by side decide a patient once: the first decides, the others read its decision.
    """

    def __init__(self, folder: str | Path, key: bytes) -> None:
        self.path = Path(folder) / CHOICES_FILE
        self._mac_key = derive(key, "surrogate-choices")

    def _mac(self, entries: Mapping[str, Any]) -> str:
        import rfc8785

        return hmac.new(self._mac_key, rfc8785.dumps(entries), "sha256").hexdigest()

    def _load(self) -> dict[str, Any]:
        if not self.path.is_file():
            return {}
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
            entries, mac = doc["entries"], doc["mac"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"the surrogate decisions cannot be read ({exc}); restore the file from the key folder's backup", self.path) from exc
        if not hmac.compare_digest(str(mac), self._mac(entries)):
            raise ConfigError(
                "the surrogate decisions do not match this release key (changed, or from another key folder); "
                "restore the file from the key folder's backup",
                self.path,
            )
        return dict(entries)

    def _save(self, entries: Mapping[str, Any]) -> None:
        write_json_atomic(self.path, {"entries": entries, "mac": self._mac(entries)}, indent=1, mode=0o600)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.path.with_name(f".{CHOICES_FILE}.lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def stored(self, pseudonym: str) -> SurrogateDecision | None:
        """The decision stored for ``pseudonym``, or None."""
        with self._locked():
            doc = self._load().get(pseudonym)
        return None if doc is None else SurrogateDecision.from_dict(doc, "stored")

    def decide(self, pseudonym: str, measure: Callable[[], SurrogateDecision | None]) -> SurrogateDecision | None:
        """The stored decision for ``pseudonym``, else ``measure()``'s, stored (None: nothing to
        measure on, nothing stored)."""
        try:
            with self._locked():
                entries = self._load()
                if pseudonym in entries:
                    return SurrogateDecision.from_dict(entries[pseudonym], "stored")
                decision = measure()
                if decision is not None:
                    entries[pseudonym] = {k: v for k, v in decision.to_dict().items() if k != "decided"}
                    self._save(entries)
                return decision
        except OSError as exc:
            raise ConfigError(f"the surrogate decisions cannot be written ({exc.strerror}); the key folder must be writable", self.path) from exc

    def adopt(self, decisions: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[int, int]]:
        """Store each patient's decision (pseudonym -> a record's decision) where none is stored yet;
        stores nothing and returns the patients whose stored counter differs (pseudonym -> (stored,
        given)) otherwise.

        The merge adopts the records' decisions into its key folder, so a decision a shard took with
        a copy of the key folder is kept for later releases with this one.
        """
        differing: dict[str, tuple[int, int]] = {}
        try:
            with self._locked():
                entries = self._load()
                for pseudonym, decision in decisions.items():
                    if pseudonym not in entries:
                        entries[pseudonym] = {k: v for k, v in decision.items() if k != "decided"}
                    elif int(entries[pseudonym]["counter"]) != int(decision["counter"]):
                        differing[pseudonym] = (int(entries[pseudonym]["counter"]), int(decision["counter"]))
                if decisions and not differing:
                    self._save(entries)
        except OSError as exc:
            raise ConfigError(f"the surrogate decisions cannot be written ({exc.strerror}); the key folder must be writable", self.path) from exc
        return differing


def split_decisions(records: Iterable[Mapping[str, Any]]) -> dict[str, dict[int, list[str]]]:
    """Patients whose items were given different surrogates: pseudonym -> counter -> the items' inputs.

    Shards that ran with copies of the key folder (no shared file system) each decide a new patient
    on their own items' frames, and can take different counters for one patient; the merge must not
    release one patient under two surrogates.
    """
    by_patient: dict[str, dict[int, list[str]]] = {}
    for record in records:
        decision = record.get("faces", {}).get("surrogate")
        if decision is None or not record.get("pseudonym"):
            continue
        by_patient.setdefault(record["pseudonym"], {}).setdefault(int(decision["counter"]), []).append(str(record["input"]))
    return {p: counters for p, counters in by_patient.items() if len(counters) > 1}

