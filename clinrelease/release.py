"""The release orchestrator: the only module that knows the order of the stages.

A release is many items plus the clinical tables. Each item goes through
``header de-id -> faces -> anonymize -> encode -> verify -> release or quarantine`` in
:func:`process_item`, a pure, idempotent function of the item and a picklable
:class:`ItemContext` that returns an unsigned record (a plain dict). Items may run in a local
process pool, on a Dask cluster, or in shards on a batch scheduler; one merge step
(:func:`merge_release`) then orders the records, writes the clinical tables, ``summary.json``, the QA
report, the manifest and the signed audit log.

Where things go::

    OUT/                      the release: nothing else may be in it (RELEASE_NAMES)
      data/...                released DICOM, paths from pseudonyms and UIDs
      clinical/...            released clinical tables
      report/index.html       the QA report; report/summary.json
      audit/                  released audit log, signed in-toto statement
      manifest-sha256.txt     BagIt-style manifest (+ tagmanifest-sha256.txt, bagit.txt)
    OUT.quarantine/ITEM/      what failed, with reasons.json (outside the release)
    OUT.work/                 the site's working state: staging, per-item records, internal log,
      ready/                  verified outputs waiting for the merge
      next/                   the next release, built by the merge, then swapped in for OUT
      release.lock            the release lock (clinrelease.lock)

OUT changes in one step only: the merge builds the whole next release (released files hard-linked
from OUT and ready/, clinical table, report, signed log, manifests) in ``WORK/next`` and exchanges
it with OUT (:mod:`clinrelease.swap_in`). A failure before that step (a clinical table that does not
parse, a full disk) leaves the previous signed release exactly as it was, and no temporary file is
ever written inside OUT.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrelease import __version__
from clinrelease.crypto.digest import sha256_file
from clinrelease.audit.identity import derive_release_id, release_nonce
from clinrelease.audit.records import utc_now
from clinrelease.crypto.kdf import derive_hex
from clinrelease.errors import (
    EXIT_ITEM_ERRORS,
    EXIT_OK,
    EXIT_QUARANTINED,
    STORAGE_ERRNOS,
    ClinReleaseError,
    ConfigError,
    InputError,
    StorageError,
    VerificationError,
)
from clinrelease.files import write_json_atomic
from clinrelease.items import InputItem, discover_items

#: item statuses
RELEASED = "released"
QUARANTINED = "quarantined"
ERROR = "error"

#: SOP classes whose pixels are photographs or video of a person (faces may be present)
_PHOTOGRAPHIC_PREFIXES = ("1.2.840.10008.5.1.4.1.1.77.1.", "1.2.840.10008.5.1.4.1.1.7")
_PHOTO_MODALITIES = frozenset({"XC", "ES", "GM", "SM"})
_SCANNER_MODALITIES = frozenset({"CT", "MR", "PT", "NM", "US", "CR", "DX", "MG", "XA", "RF", "RG", "OCT", "OPT"})
_CONTACT_SHEET_FRAMES = 4
#: what a release folder may hold at its top level (README "release/ holds"); anything else is refused
RELEASE_NAMES = frozenset({"data", "clinical", "report", "audit", "manifest-sha256.txt", "tagmanifest-sha256.txt", "bagit.txt"})


@dataclass(frozen=True)
class ReleasePaths:
    """The folders of one release."""

    output: Path
    quarantine: Path
    work: Path

    @classmethod
    def for_output(cls, output: Path, quarantine: Path | None = None, work: Path | None = None) -> ReleasePaths:
        output = output.resolve()
        return cls(
            output=output,
            quarantine=(quarantine or output.with_name(output.name + ".quarantine")).resolve(),
            work=(work or output.with_name(output.name + ".work")).resolve(),
        )

    @property
    def staging(self) -> Path:
        return self.work / "staging"

    @property
    def ready(self) -> Path:
        """Verified outputs waiting for the merge, under their release paths (``ready/data/...``)."""
        return self.work / "ready"

    @property
    def next(self) -> Path:
        """Where the merge builds the next release before swapping it in for OUT."""
        return self.work / "next"

    @property
    def records(self) -> Path:
        return self.work / "records"

    @property
    def visuals(self) -> Path:
        return self.work / "visuals"

    def make(self) -> None:
        """Create the work folders (OUT itself appears at the first merge, whole)."""
        for folder in (self.staging, self.records, self.visuals, self.ready):
            folder.mkdir(parents=True, exist_ok=True)
        self.output.parent.mkdir(parents=True, exist_ok=True)
        if self.output.exists() and not self.output.is_dir():
            raise ConfigError("the output must be a release folder, and this is a file", self.output)
        # the next release is hard-linked together in WORK and renamed into place: one filesystem
        where = self.output if self.output.exists() else self.output.parent
        if os.stat(self.work).st_dev != os.stat(where).st_dev:
            raise ConfigError(
                f"the work folder {self.work} is on another filesystem than the release folder (or the release "
                "folder is a mount point): the release is swapped in by a rename; put --work beside the output",
                self.output,
            )

    def released_file(self, record: dict[str, Any]) -> Path | None:
        """Where a released record's file is now: waiting in ready/, or in OUT; None when in neither."""
        for root in (self.ready, self.output):
            path = root / record["output"]
            if path.is_file():
                return path
        return None


@dataclass(frozen=True)
class ItemContext:
    """Everything :func:`process_item` needs, picklable so that it can travel to workers."""

    profile_name: str
    profile_source: str | None
    profile_digest: str
    release_key: bytes
    release_id: str
    paths: ReleasePaths
    escrow: Any = None  # an escrow session (clinrelease.crypto.escrow), or None
    input_root: Path | None = None
    #: where the patients' surrogate decisions are kept: the key folder (the work folder when None)
    choices_dir: Path | None = None

    def profile(self):
        """The resolved profile (loaded once per process)."""
        return _load_profile_cached(self.profile_source or self.profile_name)


_PROFILE_CACHE: dict[str, Any] = {}


def _load_profile_cached(name_or_path: str):
    from clinrelease.profiles import load_profile

    if name_or_path not in _PROFILE_CACHE:
        _PROFILE_CACHE[name_or_path] = load_profile(name_or_path)
    return _PROFILE_CACHE[name_or_path]


# --------------------------------------------------------------------------------------------------
# helpers


def _write_json_atomic(path: Path, obj: Any, indent: int | None = 2) -> None:
    write_json_atomic(path, obj, default=_plain, indent=indent)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return str(value)


def resume_digest(ctx: ItemContext, input_sha256: str) -> str:
    """Keyed digest of (input, profile, key): an item is redone only when one of them changed."""
    return derive_hex(ctx.release_key, "resume", f"{input_sha256}:{ctx.profile_digest}:{ctx.release_id}")


# --------------------------------------------------------------------------------------------------
# header


def _container_header(item: InputItem, file_digest: str) -> Any:
    """A DICOM header for a plain video from its metadata-table row.

    UIDs are derived from the file's digest ``file_digest`` (not random) so that re-running a release produces the
    same output; dates come from the table only.
    """
    from pydicom.dataset import Dataset

    from clinrelease.dicom.writer import new_video_header

    meta = item.metadata
    ds: Dataset = new_video_header(
        patient_name=meta.get("PatientName", ""),
        patient_id=meta.get("PatientID", ""),
        patient_birth_date=meta.get("PatientBirthDate", ""),
        patient_sex=meta.get("PatientSex", ""),
        study_description=meta.get("StudyDescription", ""),
        series_description=meta.get("SeriesDescription", ""),
    )
    for n, keyword in enumerate(("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")):
        # a 128-bit value keeps the 2.25 UID within the 64 characters a UI may hold
        setattr(ds, keyword, "2.25." + str(int(hashlib.sha256(f"{file_digest}:{n}".encode()).hexdigest()[:32], 16)))
    study_date = meta.get("StudyDate", "")
    study_time = meta.get("StudyTime", "")
    for keyword in ("StudyDate", "SeriesDate", "ContentDate"):
        setattr(ds, keyword, study_date)
    for keyword in ("StudyTime", "SeriesTime", "ContentTime"):
        setattr(ds, keyword, study_time)
    ds.AcquisitionDateTime = study_date + study_time if study_date else ""
    for keyword, value in meta.items():
        if keyword not in ds:
            setattr(ds, keyword, value)
    return ds


def _is_video(header, item: InputItem) -> bool:
    """Plain videos, DICOM video IODs and multi-frame colour images go through the pixel stages."""
    if item.kind == "container":
        return True
    if str(header.get("SOPClassUID", "")).startswith("1.2.840.10008.5.1.4.1.1.77.1.") and "NumberOfFrames" in header:
        return True
    frames = int(header.get("NumberOfFrames", 1) or 1)
    return frames > 1 and int(header.get("SamplesPerPixel", 1) or 1) == 3


AUDIO_REASON = "audio is never released"
#: DICOM objects that are recorded sound (a voice identifies a patient): quarantined
AUDIO_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.9.4.1": "Basic Voice Audio Waveform",
    "1.2.840.10008.5.1.4.1.1.9.4.2": "General Audio Waveform",
}


def _is_mpeg(header) -> bool:
    from clinrelease.dicom.syntaxes import syntax_info

    syntax = syntax_info(str(header.file_meta.get("TransferSyntaxUID", "")))
    return syntax is not None and syntax.route == "mpeg"


def _is_photographic(header) -> bool:
    """Could the pixels be a photograph of a person? (Secondary Capture unless a scanner made it.)"""
    uid = str(header.get("SOPClassUID", ""))
    modality = str(header.get("Modality", "") or "")
    if modality in _PHOTO_MODALITIES:
        return True
    # a Secondary Capture of a CT or MR slice is a screenshot of a scan, not a camera picture
    return uid.startswith(_PHOTOGRAPHIC_PREFIXES) and modality not in _SCANNER_MODALITIES


# --------------------------------------------------------------------------------------------------
# the per-item pipeline


@dataclass
class _ItemWork:
    """Mutable scratch state of one item while it moves through the stages."""

    item: InputItem
    ctx: ItemContext
    record: dict[str, Any]
    staged: Path | None = None
    #: PHI-free sentences: what the release shows
    reasons: list[str] = field(default_factory=list)
    #: what the checks found, values included: the site's quarantine copy and internal log only
    details: list[str] = field(default_factory=list)
    #: the patient's identifying strings (header values, metadata row, container tags)
    phi: list[str] = field(default_factory=list)
    #: the patient attributes' values alone (names, IDs, birth date, address, ...): released texts
    #: are scanned for these; descriptions and container titles ("Gait exam") would match the
    #: release's own words
    patient_phi: list[str] = field(default_factory=list)


def process_item(item: InputItem, ctx: ItemContext) -> dict[str, Any]:
    """Run one item through every stage; return its (unsigned) record.

    The record is also saved under ``WORK/records/ITEM.json`` so that a later run resumes and the
    merge step can find it. Released files are moved to ``WORK/ready`` atomically (the merge swaps
    them into OUT with the rest of the release); failing ones go to the quarantine folder with their
    reasons. Input files are only ever read.
    """
    paths = ctx.paths
    record_path = paths.records / f"{item.item_id}.json"
    try:
        input_sha = sha256_file(item.path)
    except OSError as exc:
        input_sha = ""
        unreadable = f"input error: cannot read the file: {exc.strerror or exc}"
    else:
        unreadable = None
    if item.problem:
        unreadable = f"input error: {item.problem}"
    digest = resume_digest(ctx, input_sha)
    previous = _load_record(record_path)
    # a record without the item's identifying strings predates the released-text scan: redo it
    if previous and previous.get("resume_digest") == digest and "identifying_strings" in previous and _record_still_valid(previous, paths):
        previous["resumed"] = True
        return previous
    # a killed run may have left this item's staged output behind (never in OUT)
    for stale in paths.staging.glob(f"*{item.item_id}*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink(missing_ok=True)

    started = time.perf_counter()
    record: dict[str, Any] = {
        "item_id": item.item_id,
        "input": item.relpath,
        "kind": item.kind,
        "status": None,
        "reasons": [],
        "output": None,
        "resume_digest": digest,
        # internal only: the released audit log carries a keyed commitment instead
        "input_sha256": input_sha,
        "input_commitment": derive_hex(ctx.release_key, "commitment", input_sha),
    }
    work = _ItemWork(item, ctx, record, phi=_identifying_strings([], item, None))
    if unreadable:
        record["status"] = ERROR
        work.reasons.append(unreadable)
    elif item.duplicate_of:
        from clinrelease.verify.decision import duplicate_reason

        work.reasons.append(duplicate_reason(item.duplicate_of))
    else:
        _guarded(work, _run_stages)
    record["reasons"] = work.reasons
    record["reason_details"] = work.details
    if record["status"] is None:
        record["status"] = QUARANTINED if work.reasons else RELEASED
    _guarded(work, _finish)
    if record["status"] != RELEASED:
        _quarantine(work)
    # site only: merge scans every released text for these (the input's name is never released)
    record["identifying_strings"] = work.patient_phi
    record["seconds"] = round(time.perf_counter() - started, 3)
    # the item record is the site's working state, read back by the merge: compact JSON is written
    # several times faster (a header-only batch spent a tenth of its time indenting records)
    _write_json_atomic(record_path, record, indent=None)
    return record


def _guarded(work: _ItemWork, stage: Callable[[_ItemWork], None]) -> None:
    """Run ``stage``; any failure makes the item fail closed (quarantine or error), never the run."""
    try:
        stage(work)
    except VerificationError as exc:
        _reason(work, "", exc)
    except InputError as exc:
        work.record["status"] = ERROR
        _reason(work, "input error: ", exc)
    except ClinReleaseError as exc:
        work.record["status"] = ERROR
        _reason(work, f"{type(exc).__name__}: ", exc)
    except Exception as exc:  # a codec or model failure on one odd input must not stop the release
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            raise  # a full disk fails every item after this one: the run stops, the release stays as it was
        work.record["status"] = ERROR
        from clinrelease.verify.decision import unexpected_reason

        # a library's message may quote the file's name or a value: the site's copy only
        reason, detail = unexpected_reason(exc)
        work.reasons.append(reason)
        work.details.append(detail)
    if work.reasons and work.record["status"] == RELEASED:
        work.record["status"] = ERROR


def _reason(work: _ItemWork, prefix: str, exc: ClinReleaseError) -> None:
    from clinrelease.verify.decision import error_reason

    reason, detail = error_reason(prefix, exc.message, str(exc.__cause__ or ""))
    work.reasons.append(reason)
    if detail is not None:
        work.details.append(detail)


def _load_record(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _record_still_valid(record: dict[str, Any], paths: ReleasePaths) -> bool:
    """A previous record counts only if its released file is still there, unchanged.

    Quarantined items are not redone (the verdict would be the same); errors are (they may have
    been transient: a missing model, a full disk).
    """
    if record.get("status") != RELEASED:
        return record.get("status") == QUARANTINED
    out = paths.released_file(record)
    return out is not None and sha256_file(out) == record.get("output_sha256")


def _run_stages(work: _ItemWork) -> None:
    from clinrelease.dicom.deid import Deidentifier, read_dataset
    from clinrelease.dicom.phi_strings import identifying_strings
    from clinrelease.dicom.video import open_video, read_dicom_header

    item, ctx, record = work.item, work.ctx, work.record
    profile = ctx.profile()
    source = None
    if item.kind == "container":
        source = open_video(item.path)
        header = _container_header(item, record["input_sha256"])
        record["container_metadata_keys"] = sorted(source.info.container_metadata)
    else:
        header = read_dicom_header(item.path)
        if str(header.get("SOPClassUID", "")) in AUDIO_SOP_CLASSES:
            raise VerificationError(f"{AUDIO_REASON}: the file is a {AUDIO_SOP_CLASSES[str(header.SOPClassUID)]} object")
    work.patient_phi = identifying_strings(header)
    work.phi = _identifying_strings(work.patient_phi, item, source)
    video = _is_video(header, item)
    faces_on = bool(video and profile.faces.enabled and profile.anonymizer is not None)
    options = list(profile.deid.options)
    # pixels are decoded and re-encoded only when a pixel stage needs them (or a plain video must
    # become DICOM); otherwise the original pixel data is carried over untouched
    # a profile that verifies faces without anonymizing them still gets its checks run on the pixels
    # (fail closed: a visible face then fails them) instead of having them silently dropped
    face_checks = bool(profile.verify.recognizers) or bool(profile.verify.residual_faces)
    # audio is never released: pixel data that multiplexes sound with the pictures (an MP4 or MPEG-2
    # program stream) goes through the pixel route, which re-encodes the pictures alone
    if video and source is None and _is_mpeg(header):
        source = open_video(item.path)
    audio = bool(source and source.info.audio_streams)
    video = item.kind == "container" or faces_on or (video and ("clean_pixel_data" in options or face_checks or audio))
    if video and source is None:
        source = open_video(item.path)
    if not video:
        header = read_dataset(item.path)
    if not faces_on and "clean_recognizable_visual_features" in options:
        if _is_photographic(header):
            raise VerificationError(
                "the profile requires Clean Recognizable Visual Features, and faces are anonymized in video only"
            )
        options.remove("clean_recognizable_visual_features")
    if not video and "clean_pixel_data" in options:
        options.remove("clean_pixel_data")
    record["deid_options"] = options
    deidentifier = Deidentifier(options, ctx.release_key, keep=profile.deid.keep, safe_private_extra=profile.deid.safe_private_extra)
    result = deidentifier.deidentify(header, pixels_cleaned="clean_pixel_data" in options, faces_anonymized=faces_on)
    record["pseudonym"] = result.pseudonym
    record["header_changes"] = [{"tag": c.tag, "name": c.name, "action": c.action, "path": c.path, "reason": c.reason} for c in result.changes]
    if video:
        _release_video(work, source, header, result, faces_on)
    else:
        _release_header_only(work, header, result)


def _release_header_only(work: _ItemWork, original, result) -> None:
    """A still or non-image object: the de-identified header with the pixels as they are."""
    from pydicom import dcmread

    from clinrelease.dicom.deid import output_relpath, write_deidentified
    from clinrelease.dicom.residual import residual_phi
    from clinrelease.verify.decision import ItemReports, checks_for, report_figures
    from clinrelease.verify.leaks import scan_bytes

    item, ctx, record = work.item, work.ctx, work.record
    staged = ctx.paths.staging / f"{item.item_id}.dcm"
    work.staged = staged
    write_deidentified(result.dataset, staged)
    record["output"] = "data/" + output_relpath(result.dataset)
    record["output_uid"] = str(result.dataset.get("SOPInstanceUID", ""))
    reports = ItemReports(header=residual_phi(original, dcmread(staged), result))
    if ctx.profile().verify.leak_scan:
        reports.leaks = scan_bytes(staged, _identifying_strings(result.original_phi, item, None) or work.phi, encoder_text=False)
    figures = report_figures(reports)
    # the pixels are carried over untouched: only the header and the file's bytes are judged
    _decide(work, figures, [c for c in checks_for(ctx.profile()) if c.group in ("header", "leaks")], reports)
    record["verification"] = figures


def _decide(work: _ItemWork, figures: dict[str, Any], checks, reports) -> None:
    """The item's verdict, reasons and audit rows from :func:`clinrelease.verify.decision.decide`."""
    from clinrelease.verify.decision import decide

    decision = decide(figures, checks, reports)
    work.reasons.extend(decision.reasons)
    work.details.extend(decision.details)
    work.record["audit_checks"] = decision.rows


def _identifying_strings(original_phi: list[str], item: InputItem, source) -> list[str]:
    """Everything of the input that identifies the patient: header values, metadata row, container tags."""
    strings = list(original_phi)
    strings.extend(v for v in item.metadata.values() if v)
    if source is not None:
        # technical tags (brand "isom", minor version "512", muxer name) identify no one, and short
        # ones turn up by chance in compressed bytes: a false leak would quarantine every video
        strings.extend(source.info.descriptive_metadata.values())
    return sorted({s.strip() for s in strings if len(s.strip()) >= 3})


#: the record's face-realism figures (nested as ``face_realism`` in summary.json)
REALISM_FIGURES = (
    "face_realism_frames",
    "face_score_ratio",
    "face_mesh_presence",
    "eye_correlation",
    "eye_deviation",
    "mouth_correlation",
    "mouth_opening_change",
    "corner_lift",
    "corner_lift_abs",
)


def endpoint_figures(report) -> dict[str, Any]:
    """An endpoint report as the record's table (endpoint -> original, released, difference,
    tolerance, status, reason); the flat figures its checks judge are
    :func:`clinrelease.verify.decision.report_figures`'."""
    return {
        r.name: {"original": r.original, "released": r.released, "difference": r.difference, "change": r.change,
                 "tolerance": r.tolerance, "unit": r.unit, "status": r.status, "reason": r.reason}
        for r in report.results
    }


def _release_video(work: _ItemWork, source, header, result, faces_on: bool) -> None:
    """Anonymize, encode, verify one video; stage the output for :func:`_finish`."""
    from pydicom import dcmread

    from clinrelease.dicom.deid import output_relpath
    from clinrelease.dicom.residual import residual_phi
    from clinrelease.dicom.video import open_video
    from clinrelease.dicom.writer import write_dicom_video
    from clinrelease.verify.decision import checks_for, report_figures
    from clinrelease.verify.leaks import scan_bytes
    from clinrelease.verify.ocr import TextScan, clean_video_text
    from clinrelease.verify.walk import ORIGINAL, RELEASED, WalkPlan, verify_frames

    item, ctx, record = work.item, work.ctx, work.record
    profile = ctx.profile()
    verify = profile.verify
    info = source.info
    clean_text = "clean_pixel_data" in record["deid_options"] and verify.ocr.enabled

    analysis = None
    frames = source.frames()
    #: wall seconds per stage, for the benchmarks (site record only)
    stages: dict[str, float] = {}
    started = time.perf_counter()
    if faces_on or verify.recognizers or verify.residual_faces:
        from clinrelease.face.pipeline import analyze_faces

        analysis = analyze_faces(
            source.frames(),
            patient_rule=profile.faces.patient_rule,
            min_face_px=profile.faces.min_face_px,
            hands=profile.faces.keep_hands,
        )
        stages["analyze"] = time.perf_counter() - started
    if faces_on:
        from clinrelease.face.pipeline import SWAP_MIN_FACE_PX, anonymize_frames, small_faces

        from clinrelease.face.small import plan_methods
        from clinrelease.verify.reid import profile_recognizers

        # small and turned-away faces of the tracks the swap anonymizes, decided before any pixel changes
        swapped = tuple(role for role, name in (("patient", profile.anonymizer.name), ("bystander", profile.anonymizer.bystander)) if name == "swap")
        methods = plan_methods(
            analysis, swapped, small_face=profile.faces.small_face, profile_view=profile.faces.profile_view, yaw_limit=profile.faces.profile_yaw,
            guard=profile_recognizers(profile.verify),
        )  # fmt: skip
        started = time.perf_counter()
        decision = _surrogate_decision(ctx, profile, analysis, source, result.pseudonym, methods)
        stages["surrogate"] = time.perf_counter() - started
        counter = 0 if decision is None else decision.counter
        pool = _decided_generator_pool(decision, result.pseudonym)
        patient, bystander = build_anonymizers(profile, ctx.release_key, result.pseudonym, counter=counter, pool=pool)
        frames = anonymize_frames(frames, analysis, patient=patient, bystander=bystander, methods=methods)
        bystanders = sum(1 for t in analysis.tracks if t.role != "patient")
        record["faces"] = {
            "tracks": len(analysis.tracks),
            "patient_frames": len(analysis.patient.faces) if analysis.patient else 0,
            "bystander_tracks": bystanders,
            "bystander_treatment": profile.anonymizer.bystander if bystanders else None,
            "methods": methods.to_dict(),
        }
        if decision is not None:
            record["faces"]["surrogate"] = decision.to_dict()
        small = small_faces(analysis)
        record["faces"]["small"] = {
            "min_px": SWAP_MIN_FACE_PX,
            "method": profile.faces.small_face,
            "frames_by_track": {str(k): v for k, v in small.items()},
        }
    burned_in = TextScan(verify.ocr.sample_every)
    if clean_text:
        from functools import partial

        from clinrelease.face.pipeline import face_outlines

        faces = partial(face_outlines, analysis) if analysis is not None else None
        frames = clean_video_text(frames, sample_every=verify.ocr.sample_every, scan=burned_in, faces=faces)

    staged = ctx.paths.staging / f"{item.item_id}.dcm"
    work.staged = staged
    started = time.perf_counter()
    written = write_dicom_video(
        staged,
        result.dataset,
        frames,
        fps=info.fps,
        syntax=profile.output.syntax,
        quality=profile.output.quality,
    )
    record["output"] = "data/" + output_relpath(result.dataset)
    record["output_uid"] = written.sop_instance_uid
    if faces_on:  # the small faces' guard chose methods while the frames were rendered
        record["faces"]["methods"] = methods.to_dict()
    stages["anonymize_encode"] = time.perf_counter() - started

    output = open_video(staged)
    # only decoded pictures are written: any sound beside them stays behind (and the report says so)
    figures: dict[str, Any] = {"frames": written.frames, "audio_streams_dropped": info.audio_streams}
    figures["frame_count_difference"] = abs(info.frames - written.frames) if info.frames else 0
    if "surrogate" in record.get("faces", {}):
        figures["surrogate_counter"] = record["faces"]["surrogate"]["counter"]
        figures["surrogate_decided"] = record["faces"]["surrogate"]["decided"]
    if "small" in record.get("faces", {}):
        from clinrelease.face.pipeline import frame_ranges

        # where a face is too small for the swap to carry a new identity (a quarantine there is
        # the face's size, not the key): per face, per frame, in the record and the report
        small = record["faces"]["small"]["frames_by_track"]
        figures["small_face_frames"] = len({f for frames in small.values() for f in frames})
        figures["small_face_at"] = "; ".join(f"face {track}: frames {frame_ranges(frames)}" for track, frames in small.items())
        figures["small_face_method"] = record["faces"]["small"]["method"]
    if "methods" in record.get("faces", {}):
        _method_figures(work, record["faces"], figures)
    if clean_text:
        on_face = sum(tb.on_face for tb in burned_in.found)
        figures["burned_in_text_found"] = len(burned_in.found)
        figures["burned_in_text_cleaned"] = len(burned_in.found) - on_face
        figures["burned_in_text_cleaned_at"] = burned_in.where()
        figures["burned_in_text_on_face"] = on_face
        figures["burned_in_text_on_face_at"] = burned_in.where(on_face=True)
    kp = verify.keypoints
    face = kp.face_nme_max is not None or kp.face_expression_nme_max is not None
    keypoints = any(getattr(kp, f"{p}_ap_min") is not None for p in ("body", "head", "arms", "legs")) or face
    person = _patient_body(analysis) if keypoints and analysis is not None and len(analysis.tracks) > 1 else None
    endpoints = verify.endpoints.judged() if verify.endpoints is not None and verify.endpoints.tolerances else {}
    from clinrelease.verify.reid import profile_recognizers

    # counted at the profile's thresholds: the recorded frames_matched are what the decision judges
    recognizers = profile_recognizers(verify)
    plan = WalkPlan(
        sample_every=verify.sample_every, recognizers=tuple(recognizers.values()), residual_recognizer=recognizers.get("sface", "sface"),
        residual_faces=bool(verify.residual_faces), keypoints=keypoints, face=face, person=person,
        realism=verify.face_realism is not None, endpoints=endpoints,
        realism_skip=methods.blurred_frames(analysis.patient.track_id) if faces_on and analysis.patient else frozenset(),
        endpoint_sample_every=verify.endpoints.sample_every if endpoints else None, fps=info.fps,
        text_every=verify.ocr.sample_every if clean_text else None,
    )  # fmt: skip
    sheet = {"contact_sheet": (lambda o, r: _visuals(work, zip(o, r), written.frames, analysis, verify), (ORIGINAL, RELEASED))}
    # one decode of each video feeds every check (and the contact sheet's picks)
    walked = time.perf_counter()
    reports, _, _, seconds = verify_frames(source.frames(), output.frames(), analysis, plan, extra=sheet)
    stages["verify"] = time.perf_counter() - walked
    stages.update({f"verify_{k}": v for k, v in seconds.items()})
    if reports.keypoints is not None:
        figures["keypoints_person"] = "patient" if person is not None else "most prominent"
    if reports.endpoints is not None:
        figures["endpoints"] = endpoint_figures(reports.endpoints)
    phi = _identifying_strings(result.original_phi, item, source)
    if verify.leak_scan:
        started = time.perf_counter()
        reports.leaks = scan_bytes(staged, phi)
        stages["leak_scan"] = time.perf_counter() - started
    reports.header = residual_phi(header, dcmread(staged, stop_before_pixels=True), result)

    judged = {**figures, **report_figures(reports)}
    _decide(work, judged, checks_for(profile, text=clean_text), reports)
    # the endpoints' flat figures are in their table already (figures["endpoints"])
    record["verification"] = {k: v for k, v in judged.items() if not (k.startswith("endpoint_") or k == "endpoints_lost")}
    record["series"] = _series(reports)
    record["identifying_strings_count"] = len(phi)
    record["stage_seconds"] = {k: round(v, 3) for k, v in stages.items()}


def _method_figures(work: _ItemWork, faces: dict[str, Any], figures: dict[str, Any]) -> None:
    """What was done to whom, for the record and the report: the bystanders' treatment, each method
    other than the plain swap per face and frame, and the turned-away frames (which quarantine the
    item where the profile says so)."""
    from clinrelease.face.pipeline import frame_ranges

    methods = faces["methods"]
    if faces.get("bystander_treatment"):
        figures["bystander_treatment"] = faces["bystander_treatment"]
    for method, tracks in methods["frames_by_method"].items():
        figures[f"faces_{method}_frames"] = sum(len(f) for f in tracks.values())
        figures[f"faces_{method}_at"] = "; ".join(f"face {t}: frames {frame_ranges(f)}" for t, f in tracks.items())
    turned = methods["turned_frames_by_track"]
    figures["profile_view_treatment"] = methods["profile_view"]
    figures["profile_view_frames"] = sum(len(f) for f in turned.values())
    if turned:
        figures["profile_view_at"] = "; ".join(f"face {t}: frames {frame_ranges(f)}" for t, f in turned.items())
        if methods["profile_view"] == "quarantine":
            work.reasons.append(
                f"faces: a face is turned beyond the swap (profile view or back of the head) in {figures['profile_view_frames']} "
                f"frames ({figures['profile_view_at']}), and the profile quarantines such items (faces.profile_view: quarantine)"
            )


def _patient_body(analysis) -> Callable[[int], Any] | None:
    """Where the patient's body is in each frame (below their tracked face), so that keypoints are
    compared on the patient when a video shows several people; None without a patient track."""
    from clinrelease.verify.keypoints import body_box

    patient = analysis.patient
    if patient is None:
        return None

    def box(index: int):
        face = patient.faces.get(index)
        return None if face is None else body_box(face.box, analysis.rows, analysis.columns)

    return box


def build_anonymizers(profile, key: bytes, pseudonym: str, counter: int = 0, pool=None):
    """The profile's patient and bystander anonymizers, keyed to this patient; the built-in swap
    gives the patient the ``counter``-th surrogate of the key's sequence (from ``pool`` instead of
    the profile's pool where given)."""
    from clinrelease.face.params import BASELINE_ANONYMIZERS, anonymizer_arguments
    from clinrelease.face.registry import get_anonymizer

    settings = profile.anonymizer
    params = settings.params if pool is None else {**settings.params, "pool": pool}

    def arguments(name: str, **keyed: Any) -> dict[str, Any]:
        return {} if name in BASELINE_ANONYMIZERS else {**anonymizer_arguments(name, params), "key": key, "pseudonym": pseudonym, **keyed}

    patient = get_anonymizer(settings.name, **arguments(settings.name, **({"counter": counter} if settings.name == "swap" else {})))
    bystander = get_anonymizer(settings.bystander, **arguments(settings.bystander))
    return patient, bystander


def _surrogate_decision(ctx: ItemContext, profile, analysis, source, pseudonym: str, methods=None):
    """The patient's place in the key's surrogate sequence (:mod:`clinrelease.face.surrogate_choice`):
    stored with the key once decided, else measured on this item's frames; None where the profile's
    anonymizer draws no surrogate or no recognizer checks faces."""
    if profile.anonymizer.name != "swap" or not profile.verify.recognizers:
        return None
    from clinrelease.face.small import size_aware
    from clinrelease.face.surrogate_choice import ChoiceStore, patient_samples, screen
    from clinrelease.verify.reid import profile_recognizers

    def measure():
        samples = patient_samples(source.frames(), analysis)
        if not samples:
            return None  # no patient face to measure on: the first surrogate, nothing decided
        recognizers = {name: (rec, rec.threshold) for name, rec in profile_recognizers(profile.verify).items()}
        pool = None
        if profile.anonymizer.params.get("pool") == "generator":
            from clinrelease.face.generator import GeneratorPool, patient_embeddings

            # a generated face the recognizers take for this patient is skipped before it is swapped on
            pool = GeneratorPool(avoid=patient_embeddings(samples, sorted(recognizers)))
        # candidates are tried as the item will be rendered (small faces upscaled, turned ones blurred)
        anonymizer_for = lambda c: size_aware(build_anonymizers(profile, ctx.release_key, pseudonym, counter=c, pool=pool)[0], methods)  # noqa: E731
        decision = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers)
        if pool is not None:
            from clinrelease.face.surrogates import sequence_member

            decision.attempt = pool.attempt_for(ctx.release_key, sequence_member(pseudonym, decision.counter))
        return decision

    return ChoiceStore(ctx.choices_dir or ctx.paths.work, ctx.release_key).decide(pseudonym, measure)


def _decided_generator_pool(decision, pseudonym: str):
    """A generated pool that draws the face decided with the patient's embeddings (stored with the
    decision, so items and shards that did not measure draw the same face); None otherwise."""
    if decision is None or decision.attempt is None:
        return None
    from clinrelease.face.generator import GeneratorPool
    from clinrelease.face.surrogates import sequence_member

    return GeneratorPool(attempts={sequence_member(pseudonym, decision.counter): decision.attempt})


def _series(reports) -> dict[str, Any]:
    """Per-frame figures for the report's plots."""
    series: dict[str, Any] = {"similarity": {}, "oks": []}
    if reports.reid is not None:
        for name, res in reports.reid.results.items():
            series["similarity"][name] = [(s.frame, s.similarity) for s in res.samples]
    if reports.keypoints is not None:
        series["oks"] = [(f.frame, f.oks.get("body")) for f in reports.keypoints.per_frame if f.oks.get("body") is not None]
    return series


def _visuals(work: _ItemWork, frame_pairs: Iterable[tuple[np.ndarray, np.ndarray]], total: int, analysis, verify) -> None:
    """Contact sheet for the report, and face embeddings for the release-level gallery attack, from
    the (original, released) frames of a video of ``total`` frames (read up to the last pick)."""
    import cv2

    from clinrelease.report import compose_contact_sheet

    if not total:
        return
    if analysis is not None and analysis.patient is not None and analysis.patient.faces:
        candidates = analysis.patient.frame_indices
    else:
        candidates = list(range(total))
    picks = sorted({candidates[int(i)] for i in np.linspace(0, len(candidates) - 1, min(_CONTACT_SHEET_FRAMES, len(candidates)))})
    gallery_picks = sorted({candidates[int(i)] for i in np.linspace(0, len(candidates) - 1, min(8, len(candidates)))})
    wanted = set(picks) | (set(gallery_picks) if analysis is not None else set())
    pairs = []
    embeddings: dict[str, list[np.ndarray]] = {}
    recognizers = _gallery_recognizers(verify) if analysis is not None and analysis.patient is not None else []
    for index, (orig, anon) in enumerate(frame_pairs):
        if index > max(wanted):
            break
        if index not in wanted:
            continue
        if index in picks:
            pairs.append((index, orig, anon))
        if index in gallery_picks and recognizers:
            face = analysis.patient.faces.get(index)
            if face is None:
                continue
            for rec in recognizers:
                for side, frame in (("orig", orig), ("anon", anon)):
                    vec = rec.embed(frame, box=face.box, landmarks=face.landmarks)
                    if vec is not None:
                        embeddings.setdefault(f"{side}:{rec.name}", []).append(np.asarray(vec, dtype=np.float32))
    if pairs:
        from clinrelease.verify.keypoints import pose_detector

        # the reviewer sees the keypoints the verification compared, drawn on both sides
        detect = pose_detector()
        keypoints = []
        for _, orig, anon in pairs:
            poses = [detect(orig), detect(anon)]
            keypoints.append(tuple(None if p is None else np.column_stack([p.points, p.visibility]) for p in poses))
        sheet = compose_contact_sheet(pairs, keypoints)
        cv2.imwrite(str(work.ctx.paths.visuals / f"{work.item.item_id}.png"), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if embeddings:
        folder = work.ctx.paths.work / "embeddings"
        folder.mkdir(exist_ok=True)
        np.savez(folder / f"{work.item.item_id}.npz", **{k: np.stack(v) for k, v in embeddings.items()})


def _gallery_recognizers(verify) -> list:
    from clinrelease.verify.reid import get_recognizer

    return [get_recognizer(name) for name in verify.recognizers if name in ("dlib", "sface")]


def _finish(work: _ItemWork) -> None:
    """Escrow the original, then move the staged output to ready/ for the merge, in one atomic rename."""
    item, ctx, record = work.item, work.ctx, work.record
    if record["status"] != RELEASED or work.staged is None or not work.staged.exists():
        return
    target = ctx.paths.ready / record["output"]
    target.parent.mkdir(parents=True, exist_ok=True)
    record["output_sha256"] = sha256_file(work.staged)
    if ctx.escrow is not None:
        record["escrow"] = _escrow(ctx, item, record)
    os.replace(work.staged, target)


def _quarantine(work: _ItemWork) -> None:
    """Put a failing item's staged output (if any) and its reasons into the quarantine folder."""
    item, record = work.item, work.record
    qdir = work.ctx.paths.quarantine / item.item_id
    qdir.mkdir(parents=True, exist_ok=True)
    if work.staged is not None and work.staged.exists():
        os.replace(work.staged, qdir / "anonymized.dcm")
        record["quarantined_output"] = str(qdir / "anonymized.dcm")
    _write_json_atomic(qdir / "reasons.json", {
        "input": item.relpath, "status": record["status"], "reasons": record["reasons"],
        "details_with_phi": record["reason_details"],
    })  # fmt: skip
    record["output"] = None


def _escrow(ctx: ItemContext, item: InputItem, record: dict[str, Any]) -> dict[str, Any]:
    entry = ctx.escrow.escrow(item.path, record.get("output_uid", ""), record["output_sha256"])
    return {"object_id": getattr(entry, "object_id", None), "wrap_id": getattr(entry, "wrap_id", None)}


# --------------------------------------------------------------------------------------------------
# a whole release


@dataclass
class ReleaseOptions:
    """What ``clinrelease run`` was asked to do."""

    profile: str
    inputs: list[Path]
    output: Path
    keys_dir: Path
    quarantine: Path | None = None
    work: Path | None = None
    metadata: Path | None = None
    clinical: Path | None = None
    workers: int = 1
    executor: str = "process"  # "process" or "dask"
    scheduler: str | None = None  # dask scheduler address, or None for a LocalCluster
    shard: tuple[int, int] | None = None  # (i, N): process items i, i+N, ...; merge later
    escrow_to: list[Path] = field(default_factory=list)
    vault: Path | None = None
    m_of_n: int | None = None
    operator: str = ""
    irb: str | None = None
    dua: str | None = None
    release_id: str | None = None


@dataclass
class ReleaseSummary:
    """What a run or merge did, for the CLI to print."""

    output: Path
    quarantine: Path
    records: list[dict[str, Any]]
    finalized: bool
    report: Path | None = None
    gallery: dict[str, Any] | None = None

    @property
    def counts(self) -> dict[str, int]:
        out = {RELEASED: 0, QUARANTINED: 0, ERROR: 0}
        for r in self.records:
            out[r["status"]] = out.get(r["status"], 0) + 1
        return out

    @property
    def exit_code(self) -> int:
        """3 when an input could not be read, else 1 when anything was quarantined, else 0."""
        counts = self.counts
        if counts.get(ERROR):
            return EXIT_ITEM_ERRORS
        return EXIT_QUARANTINED if counts.get(QUARANTINED) else EXIT_OK


def _check_folders(opts: ReleaseOptions, paths: ReleasePaths) -> None:
    for root in opts.inputs:
        r = root.resolve()
        for label, folder in (("output", paths.output), ("quarantine", paths.quarantine), ("work", paths.work)):
            if r == folder or folder in r.parents or r in folder.parents:
                raise ConfigError(f"the {label} folder {folder} overlaps the input; inputs are never written to", root)
    if opts.vault is not None:
        v = opts.vault.resolve()
        if v == paths.output or paths.output in v.parents:
            raise ConfigError("the vault must live outside the release folder", opts.vault)
    if opts.escrow_to and opts.vault is None:
        raise ConfigError("--escrow-to needs --vault DIR (where the encrypted originals go)")


def run_release(
    opts: ReleaseOptions,
    on_start: Callable[[int], None] | None = None,
    on_item: Callable[[dict[str, Any]], None] | None = None,
) -> ReleaseSummary:
    """Process every item (resuming where a previous run stopped), then merge unless sharded.

    The run holds the release lock (:mod:`clinrelease.lock`) from start to end; shards hold it
    shared. OS errors on storage (a full disk) end the run with :class:`StorageError` and leave the
    previous release as it was.
    """
    from clinrelease.crypto.keys import load_keys
    from clinrelease.lock import release_lock
    from clinrelease.profiles import load_profile

    profile = load_profile(opts.profile)
    keys = load_keys(opts.keys_dir, need_signing=opts.shard is None)
    paths = ReleasePaths.for_output(opts.output, opts.quarantine, opts.work)
    _check_folders(opts, paths)
    if opts.clinical is not None:
        validate_clinical(opts.clinical, keys.release_key, profile)
    if _model_after_run(profile) == "escrow" and not opts.escrow_to:
        # before any item runs: the models are escrowed only once every item is done
        raise ConfigError("anonymizer.params.model_after_run: escrow needs custodians: run with --escrow-to PUB --vault DIR")
    items = discover_items(opts.inputs, opts.metadata, id_key=keys.release_key)
    what = "run" if opts.shard is None else f"run --shard {opts.shard[0]}/{opts.shard[1]}"
    with _storage_errors(paths.work), release_lock(paths.work, what, shared=opts.shard is not None):
        return _run_locked(opts, paths, profile, keys, items, on_start, on_item)


def _run_locked(opts, paths: ReleasePaths, profile, keys, items: list[InputItem], on_start, on_item) -> ReleaseSummary:
    paths.make()
    release_meta = paths.work / "release.json"
    previous = _load_record(release_meta)
    _check_release_key(previous, keys.release_key, paths)
    if previous and previous.get("profile_digest") != profile.digest:
        raise ConfigError(
            f"{paths.output} was started with profile {previous.get('profile')} (another digest); "
            "use a new output folder for a different profile"
        )
    _refuse_strays(paths, load_records(paths, every=True))
    # the whole input, before sharding: the merge releases these items and no others (withdrawal)
    _write_json_atomic(paths.work / "inputs.json", {"items": [it.item_id for it in items]})
    if opts.shard is not None:
        index, count = opts.shard
        items = [it for n, it in enumerate(items) if n % count == index]
    nonce = release_nonce(paths.work)
    release_id = opts.release_id or derive_release_id(keys.release_key, profile.digest, nonce)
    if previous and "nonce" not in previous:  # begun before release nonces: keep its id so that resume redoes nothing
        release_id = previous["release_id"]
    meta = {
        "release_id": release_id,
        "nonce": nonce,
        "release_key_id": release_key_id(keys.release_key),
        "profile": profile.name,
        "profile_source": str(profile.source) if profile.source else profile.name,
        "profile_digest": profile.digest,
        "operator": opts.operator,
        "irb": opts.irb,
        "dua": opts.dua,
        "clinical": str(opts.clinical.resolve()) if opts.clinical else None,
        "started": utc_now(),
    }
    if previous:
        meta["started"] = previous.get("started", meta["started"])
    _write_json_atomic(release_meta, meta)

    escrow = None
    if opts.escrow_to:
        from clinrelease.crypto.escrow import Vault

        escrow = Vault(opts.vault).open_release(release_id, opts.escrow_to, opts.m_of_n)
    ctx = ItemContext(
        profile_name=profile.name,
        profile_source=meta["profile_source"],
        profile_digest=profile.digest,
        release_key=keys.release_key,
        release_id=release_id,
        paths=paths,
        escrow=escrow,
        choices_dir=keys.directory,
    )
    if on_start:
        on_start(len(items))
    records = _execute(items, ctx, opts, on_item)
    if opts.shard is None:
        # only a whole release may dispose of the models: another shard may still need them
        disposed = dispose_patient_models(profile, records, escrow)
        if disposed:
            meta["models_disposed"] = disposed
            _write_json_atomic(release_meta, meta)
    if escrow is not None and hasattr(escrow, "close"):
        escrow.close()
    if opts.shard is not None:
        return ReleaseSummary(paths.output, paths.quarantine, records, finalized=False)
    return _merge_locked(paths, opts.keys_dir)


def release_key_id(release_key: bytes) -> str:
    """A keyed fingerprint of the release key: tells two keys apart, reveals nothing of either."""
    return derive_hex(release_key, "release-key-id", "", 16)


def _check_release_key(previous: dict[str, Any] | None, release_key: bytes, paths: ReleasePaths) -> None:
    """Refuse to continue a release made with another release key: its pseudonyms would mix two keys'."""
    recorded = (previous or {}).get("release_key_id")
    if recorded and recorded != release_key_id(release_key):
        raise ConfigError(
            f"this release was made with another release key (key id {recorded}; this key folder's is "
            f"{release_key_id(release_key)}): one release cannot hold pseudonyms of two keys. Run with the "
            "release's own key folder, or into a new output folder",
            paths.output,
        )


@contextmanager
def _storage_errors(folder: Path) -> Iterator[None]:
    """Turn an OS error into :class:`StorageError` naming its path, else ``folder`` (exit code 5)."""
    try:
        yield
    except OSError as exc:
        raise StorageError.from_os_error(exc, folder) from None


def _model_after_run(profile) -> str:
    """The profile's ``anonymizer.params.model_after_run`` (checked when the profile loads)."""
    return "keep" if profile.anonymizer is None else str(profile.anonymizer.params.get("model_after_run", "keep"))


def dispose_patient_models(profile, records: list[dict[str, Any]], escrow) -> list[dict[str, str]]:
    """Delete (or escrow, then delete) the learned models trained for this release's patients.

    A model trained on one patient's face is identifying data in its own right. The profile's
    ``anonymizer.params.model_after_run`` says what happens to it once every item is done: ``keep``
    (the default; the site stores it like an original), ``delete`` (overwritten, then unlinked), or
    ``escrow`` (encrypted to the custodians like an original, then deleted).
    """
    settings = profile.anonymizer
    if settings is None:
        return []
    policy = _model_after_run(profile)
    model = settings.params.get("model")
    if policy == "keep" or not model:
        return []
    from clinrelease.face.learned.faceswap import secure_delete_model

    paths = {Path(str(model).replace("{pseudonym}", r["pseudonym"])): r["pseudonym"] for r in records if r.get("pseudonym")}
    disposed = []
    for path, pseudonym in sorted(paths.items()):
        if not path.is_file():
            continue
        digest = sha256_file(path)
        if policy == "escrow":
            escrow.escrow(path, f"model-{pseudonym}", digest)
        secure_delete_model(path)
        disposed.append({"pseudonym": pseudonym, "sha256": digest, "action": policy})
    return disposed


def _execute(
    items: list[InputItem], ctx: ItemContext, opts: ReleaseOptions, on_item: Callable[[dict[str, Any]], None] | None
) -> list[dict[str, Any]]:
    """Run :func:`process_item` over the items: in this process, a process pool, or Dask."""
    records: list[dict[str, Any]] = []

    def done(record: dict[str, Any]) -> None:
        records.append(record)
        if on_item:
            on_item(record)

    if opts.executor == "dask":
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError as exc:
            raise ConfigError("--executor dask needs the dask extra: pip install -e '.[dask]'") from exc
        if opts.scheduler:
            client = Client(opts.scheduler)
            cluster = None
        else:
            cluster = LocalCluster(n_workers=max(1, opts.workers), threads_per_worker=1, processes=True)
            client = Client(cluster)
        try:
            futures = client.map(process_item, items, ctx=ctx, pure=False)
            for future in as_completed(futures):
                done(future.result())
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
    elif opts.workers > 1 and len(items) > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed as futures_completed

        # spawn: model runtimes (mediapipe, onnxruntime, torch) do not survive fork reliably
        with ProcessPoolExecutor(max_workers=opts.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(process_item, item, ctx) for item in items]
            for future in futures_completed(futures):
                done(future.result())
    else:
        for item in items:
            done(process_item(item, ctx))
    order = {it.item_id: n for n, it in enumerate(items)}
    records.sort(key=lambda r: order.get(r["item_id"], 0))
    return records


# --------------------------------------------------------------------------------------------------
# merge: the one step that holds the signing key


def load_records(paths: ReleasePaths, every: bool = False) -> list[dict[str, Any]]:
    """The item records of a release, in input order: those of the last run's input (``WORK/inputs.json``).

    A record whose input is no longer there (a withdrawn patient's video) is left out, so the next
    merge drops it from data/, the report and the signed log; ``every`` returns them all.
    """
    records = [r for p in sorted(paths.records.glob("*.json")) if (r := _load_record(p))]
    wanted = None if every else _load_record(paths.work / "inputs.json")
    if wanted is not None:
        ids = set(wanted.get("items", []))
        records = [r for r in records if r["item_id"] in ids]
    return sorted(records, key=lambda r: r["input"])


def _refuse_strays(paths: ReleasePaths, records: list[dict[str, Any]]) -> None:
    """Refuse a release folder holding anything the release does not put there (it would be signed).

    Allowed: the top-level names of :data:`RELEASE_NAMES`, and under them the files the previous
    release's manifests list and the outputs item records vouch for. A lookup table, a temporary
    file or a ``.partial`` left in OUT is named, and nothing is changed.
    """
    out = paths.output
    if not out.is_dir():
        return
    from clinrelease.audit.manifest import MANIFEST, TAGMANIFEST, read_manifest

    known = {MANIFEST, TAGMANIFEST}
    for name in (MANIFEST, TAGMANIFEST):
        if (out / name).is_file():
            known.update(read_manifest(out / name)[0])
    known.update(r["output"] for r in records if r.get("output"))
    strays = []
    for dirpath, dirnames, filenames in os.walk(out):
        here = Path(dirpath)
        # a link to a folder is not followed by the walk: it is a stray like any file
        for name in sorted(filenames) + sorted(d for d in dirnames if (here / d).is_symlink()):
            rel = (here / name).relative_to(out).as_posix()
            if rel not in known or rel.split("/", 1)[0] not in RELEASE_NAMES:
                strays.append(rel)
    if strays:
        shown = ", ".join(strays[:10]) + (f" (and {len(strays) - 10} more)" if len(strays) > 10 else "")
        raise ConfigError(
            f"the release folder holds files that are not part of the release: {shown}. Every file in a "
            "release is signed and handed out; it may hold only data/, clinical/, report/, audit/ and its "
            "manifests. Move these out of it, then run again",
            out,
        )


def merge_release(
    output: Path,
    keys_dir: Path,
    quarantine: Path | None = None,
    work: Path | None = None,
) -> ReleaseSummary:
    """Close a release: gallery attack, clinical tables, summary, QA report, audit log, manifest.

    Idempotent: merging again rebuilds every release-level file from the item records. Holds the
    release lock; see :func:`_merge_locked`.
    """
    from clinrelease.lock import release_lock

    paths = ReleasePaths.for_output(output, quarantine, work)
    if not paths.work.is_dir():  # the lock would create it
        raise _not_started(paths)
    with _storage_errors(paths.work), release_lock(paths.work, "merge"):
        return _merge_locked(paths, keys_dir)


def _not_started(paths: ReleasePaths) -> ConfigError:
    return ConfigError(f"no release was started here: {paths.work / 'release.json'} is missing; run `clinrelease run` first", paths.output)


def _merge_locked(paths: ReleasePaths, keys_dir: Path) -> ReleaseSummary:
    """Build the next release in ``WORK/next`` and swap it in for OUT; OUT is untouched until then."""
    from clinrelease.crypto.keys import load_keys
    from clinrelease.profiles import load_profile
    from clinrelease.swap_in import swap_in

    meta = _load_record(paths.work / "release.json")
    if not meta:
        raise _not_started(paths)
    keys = load_keys(keys_dir, need_signing=True)
    _check_release_key(meta, keys.release_key, paths)
    profile = load_profile(meta["profile_source"])
    records = load_records(paths)
    if not records:
        raise ConfigError("no item records to merge; run `clinrelease run` (or its shards) first", paths.records)
    _refuse_strays(paths, load_records(paths, every=True))
    _refuse_split_surrogates(records, keys, paths)

    embeddings = _released_embeddings(paths, records)
    gallery = _gallery_attack(paths, embeddings, profile)
    surrogates = _surrogate_check(embeddings, profile)
    shutil.rmtree(paths.next, ignore_errors=True)
    try:
        report = _build_release(paths.next, paths, meta, keys, profile, records, gallery, surrogates)
        swap_in(paths.next, paths.output, paths.work / "previous")
    finally:
        shutil.rmtree(paths.next, ignore_errors=True)
    # the released files are in OUT now (hard links): their waiting copies can go
    shutil.rmtree(paths.ready, ignore_errors=True)
    paths.ready.mkdir(parents=True, exist_ok=True)
    return ReleaseSummary(paths.output, paths.quarantine, records, finalized=True, report=paths.output / report.relative_to(paths.next), gallery=gallery)


def _refuse_split_surrogates(records: list[dict[str, Any]], keys, paths: ReleasePaths) -> None:
    """Refuse to merge a patient whose items carry different surrogates of the key's sequence (shards
    that ran with copies of the key folder, each deciding the patient on its own items), or a
    different one from the merge's key folder; else keep the records' decisions in that key folder."""
    from clinrelease.face.surrogate_choice import ChoiceStore, split_decisions

    remedy = (
        "Run the shards with one shared key folder, or give each shard a copy that already holds the patient's "
        f"decision (surrogate-choices.json); then delete the records of the items to redo from {paths.records} and run their shards again"
    )
    split = split_decisions(records)
    if split:
        patient, counters = next(iter(split.items()))
        parts = "; ".join(f"surrogate {c} for {', '.join(inputs)}" for c, inputs in sorted(counters.items()))
        more = f" ({len(split) - 1} more patients likewise)" if len(split) > 1 else ""
        raise ConfigError(
            f"patient {patient} was given different surrogates: {parts}{more}. One patient must keep one surrogate "
            f"across a release; the shards decided it apart with copies of the key folder. {remedy}",
            paths.records,
        )
    decisions = {r["pseudonym"]: r["faces"]["surrogate"] for r in records if r.get("pseudonym") and "surrogate" in r.get("faces", {})}
    differing = ChoiceStore(keys.directory, keys.release_key).adopt(decisions)
    if differing:
        patient, (stored, given) = next(iter(differing.items()))
        inputs = ", ".join(r["input"] for r in records if r.get("pseudonym") == patient)
        raise ConfigError(
            f"patient {patient} was released with surrogate {given} ({inputs}), but this key folder decided surrogate "
            f"{stored} for them; the shards ran with a copy of the key folder that did not hold this decision. {remedy}",
            keys.directory,
        )


def _build_release(root: Path, paths: ReleasePaths, meta, keys, profile, records, gallery, surrogates) -> Path:
    """Write a whole signed release into the empty folder ``root``; returns the QA report's path."""
    from clinrelease.audit.chain import AuditLog
    from clinrelease.audit.finalize import finalize_release

    root.mkdir(parents=True)
    for record in records:
        if record["status"] != RELEASED:
            continue
        source = paths.released_file(record)  # a changed one is caught by finalize_release against its record
        if source is None:
            raise InputError("a released file is missing; run `clinrelease run` again to redo it", paths.output / record["output"])
        target = root / record["output"]
        target.parent.mkdir(parents=True, exist_ok=True)
        os.link(source, target)  # same filesystem (ReleasePaths.make): no copy
    table = _clinical_table(meta, keys.release_key, profile, records)
    guard = _released_texts(records, table, keys.release_key)
    clinical = _clinical_summary(table)
    finished = utc_now()
    summary = _summary(meta, profile, records, gallery, clinical, keys.signing_key_id, finished)
    summary["surrogates"] = surrogates
    site_visuals, released_visuals = _report_visuals(records, paths, profile)
    audit_items = [_item_audit_fields(record) for record in records]
    start = _start_record(meta, profile)
    # every released text passes the leak scan before anything of it is written or signed
    guard.check({
        "report/summary.json": summary,
        "report/index.html": [dataclasses.asdict(v) for v in released_visuals],
        "clinical/clinical.csv": [table.columns, table.rows] if table else [],
        "audit/log.jsonl": [start, *(fields for fields, _ in audit_items)],
    })  # fmt: skip
    _write_clinical(table, root)
    report_dir = root / "report"
    report_dir.mkdir(parents=True, exist_ok=True)
    _write_json_atomic(report_dir / "summary.json", summary)
    report = _write_report(report_dir, summary, site_visuals, released_visuals, paths)

    internal = paths.work / "audit-internal.jsonl"
    released_log = paths.work / "audit-released.jsonl"
    internal.unlink(missing_ok=True)
    released_log.unlink(missing_ok=True)
    log = AuditLog(internal, released_log, commitment_key=keys.release_key)
    log.append("release_start", start)
    for fields, internal_only in audit_items:
        log.append("item", fields, internal_only_fields=internal_only)
    finalize_release(log, root, keys.signing_key, end_fields={"gallery": gallery} if gallery else None)
    return report


def _gallery_attack(paths: ReleasePaths, embeddings: ReleasedEmbeddings, profile) -> dict[str, Any] | None:
    """Release-level attack: identify each anonymized video's patient among all originals + distractors.

    Reports closed-set rank-1 and rank-5 rates per recognizer. An item counts as *re-identified*
    when its true identity is the rank-1 hit **and** the recognizer calls that a match (open-set
    identification: a rank-1 hit far below the match threshold is chance among few identities).
    Re-identified items are withdrawn from the release before anything is signed; the release
    passes when the re-identified rate is within the profile's ``gallery.max_rank1``.
    """
    from clinrelease.verify.decision import decide, gallery_check

    check = gallery_check(profile)
    embedded, data, identity = embeddings
    if check is None or not embedded:
        return None
    from clinrelease.verify.reid import distractor_embeddings, gallery_attack, identity_score, profile_recognizers

    per_recognizer: dict[str, Any] = {}
    reidentified: set[str] = set()
    for name, rec in profile_recognizers(profile.verify).items():
        if not any(f"anon:{name}" in d for d in data.values()):
            continue
        probes = {item: list(d[f"anon:{name}"]) for item, d in data.items() if f"anon:{name}" in d}
        gallery: dict[str, list[np.ndarray]] = {}
        for item, d in data.items():
            gallery.setdefault(identity[item], []).extend(d.get(f"orig:{name}", []))
        report = gallery_attack(probes, gallery, rec, distractors=distractor_embeddings(rec), truth=identity)
        hits = []
        for item, rank in report.ranks.items():
            if rank == 1 and rec.is_match(identity_score(rec, probes[item], gallery[identity[item]])):
                hits.append(item)
        reidentified.update(hits)
        per_recognizer[name] = {
            "items": report.items,
            "gallery_identities": report.gallery_identities,
            "distractor_identities": report.distractor_identities,
            "rank1": report.rank1,
            "rank5": report.rank5,
            "reidentified": len(hits) / report.items if report.items else 0.0,
        }
    rate = len(reidentified) / len(embedded)
    decision = decide({check.name: rate}, [check])
    for record in embedded:
        if record["item_id"] in reidentified:
            for reason in decision.reasons:
                _withdraw(paths, record, reason)
    return {"recognizers": per_recognizer, "reidentified_rate": rate, "max_rank1": check.limit, "passed": decision.released}


#: released items with face embeddings: their records, item -> arrays, item -> patient
ReleasedEmbeddings = tuple[list[dict[str, Any]], dict[str, dict[str, np.ndarray]], dict[str, str]]


def _released_embeddings(paths: ReleasePaths, records: list[dict[str, Any]]) -> ReleasedEmbeddings:
    """The face embeddings :func:`_visuals` saved for each released item, read once per merge."""
    folder = paths.work / "embeddings"
    embedded = [r for r in records if r["status"] == RELEASED and (folder / f"{r['item_id']}.npz").is_file()]
    data = {r["item_id"]: dict(np.load(folder / f"{r['item_id']}.npz")) for r in embedded}
    identity = {r["item_id"]: r.get("pseudonym") or r["item_id"] for r in embedded}
    return embedded, data, identity


def _surrogate_check(embeddings: ReleasedEmbeddings, profile) -> dict[str, Any] | None:
    """One surrogate per patient, different surrogates across patients: measured on the released faces.

    Informational (nothing is withdrawn): a look-alike pair is two patients whose released faces a
    recognizer takes for one person. With the built-in swap the donor pool's size bounds how
    different surrogates can be, so the pool and the chance that two patients share a donor are
    reported beside the figures.
    """
    from clinrelease.verify.reid import profile_recognizers, surrogate_consistency

    embedded, data, identity = embeddings
    if not embedded:
        return None
    out: dict[str, Any] = {"recognizers": {}}
    for name, rec in profile_recognizers(profile.verify).items():
        probes = {item: list(d[f"anon:{name}"]) for item, d in data.items() if f"anon:{name}" in d}
        if probes:
            out["recognizers"][name] = surrogate_consistency(probes, identity, rec).to_dict()
    if profile.anonymizer.name == "swap":
        out["pool"] = _pool_figures(profile)
    return out


def _pool_figures(profile) -> dict[str, Any]:
    from clinrelease.face.surrogates import load_pool, shared_donor_probability

    source, k = profile.anonymizer.pool, profile.anonymizer.k_donors
    if source == "generator":
        from clinrelease.face.generator import LICENCE

        # one generated face per patient: no donors to share
        return {"source": "generator", "donors": 0, "k": 1, "shared_donor_probability": 0.0, "licence": LICENCE}
    pool = load_pool(source)
    return {
        "source": {"default": "built-in", "openpeople": "built-in + openpeople"}.get(source) or Path(source).name,
        "donors": len(pool),
        "k": k,
        "shared_donor_probability": round(shared_donor_probability(len(pool), k), 4),
    }


def _withdraw(paths: ReleasePaths, record: dict[str, Any], reason: str) -> None:
    """Take a released item back out of the release into the quarantine.

    A file already in OUT is copied, not moved: OUT changes only when the next release is
    swapped in, without this item.
    """
    qdir = paths.quarantine / record["item_id"]
    qdir.mkdir(parents=True, exist_ok=True)
    src = paths.released_file(record)
    if src is not None:
        (qdir / "anonymized.dcm").unlink(missing_ok=True)
        if src.is_relative_to(paths.ready):
            shutil.move(src, qdir / "anonymized.dcm")
        else:
            shutil.copy2(src, qdir / "anonymized.dcm")
    record["status"] = QUARANTINED
    record["reasons"] = [*record.get("reasons", []), reason]
    record["output"] = None
    _write_json_atomic(qdir / "reasons.json", {"input": record["input"], "status": QUARANTINED, "reasons": record["reasons"]})
    _write_json_atomic(paths.records / f"{record['item_id']}.json", record, indent=None)


def _clinical_rules(profile) -> dict[str, Any]:
    settings = profile.clinical
    rules: dict[str, Any] = {}
    for column, rule in settings.columns.items():
        rules[column] = f"generalize_age:{settings.age_band_years}" if rule == "generalize_age" and settings.age_band_years else rule
    return rules


def validate_clinical(path: Path, key: bytes, profile) -> None:
    """Read and de-identify the clinical table once before any item runs: a table that cannot be
    released is a usage error now (InputError naming the file, line and problem), not at merge."""
    from clinrelease.clinical import deidentify_table

    deidentify_table(path, _clinical_rules(profile), key, profile.clinical.id_column)


def _clinical_table(meta: dict[str, Any], key: bytes, profile, records: list[dict[str, Any]]):
    """The clinical table by the profile's column rules: rows of released patients only, kept
    cells scanned for the batch's identifying strings (see :mod:`clinrelease.clinical`)."""
    if not meta.get("clinical"):
        return None
    from clinrelease.clinical import deidentify_table
    from clinrelease.verify.released_text import batch_identifying_strings

    return deidentify_table(
        Path(meta["clinical"]), _clinical_rules(profile), key, profile.clinical.id_column,
        phi=batch_identifying_strings(records),
        known_ids={r["pseudonym"] for r in records if r.get("pseudonym")},
        released_ids={r["pseudonym"] for r in records if r.get("pseudonym") and r["status"] == RELEASED},
    )  # fmt: skip


def _clinical_summary(table) -> dict[str, Any] | None:
    if table is None:
        return None
    return {"file": "clinical/clinical.csv", "columns": table.columns, "dropped_columns": table.dropped_columns, **table.report}


def _write_clinical(table, root: Path) -> None:
    """The released table into ``root/clinical/`` (root is the next release, built outside OUT)."""
    if table is None:
        return
    from clinrelease.clinical import write_table

    target = root / "clinical" / "clinical.csv"
    target.parent.mkdir(parents=True, exist_ok=True)
    write_table(table, target)


def _released_texts(records: list[dict[str, Any]], table, key: bytes):
    """Set each record's released reasons and header changes; return the guard for the rest.

    Reasons are PHI-free sentences by construction; one that still quotes an identifying string of
    the batch is replaced (withheld). Private creators of the original header are named by a keyed
    id: which vendor's block was removed can identify a site, and the creator is free text.
    """
    from clinrelease.verify.released_text import TextGuard, batch_identifying_strings

    guard = TextGuard(batch_identifying_strings(records, table.identifying_strings if table else ()))
    for record in records:
        record["released_reasons"] = guard.clean(record["reasons"])
        names = guard.clean((_released_attribute_name(c.get("name", ""), key) for c in record.get("header_changes", [])), "(name withheld)")
        record["released_header_changes"] = [
            (c.get("tag", ""), name, c.get("action", "")) for c, name in zip(record.get("header_changes", []), names)
        ]
    return guard


def _released_attribute_name(name: str, key: bytes) -> str:
    """An attribute's name as the release shows it: private creators replaced by a keyed id."""
    if not name.startswith("Private "):
        return name
    return f"Private block {derive_hex(key, 'private-creator', name.removeprefix('Private '), 8)}"


def released_reasons(record: dict[str, Any]) -> list[str]:
    """An item's reasons as the release shows them (after the merge's released-text scan).

    Reasons are built from PHI-free fields (check, attribute path, counts); what a check found
    (the value, the text read off a frame) is in ``reason_details``, the site's copy only.
    """
    return record.get("released_reasons", record["reasons"])


#: figures of one recognizer in a record (flat ``NAME_FIGURE`` keys) -> their summary names
_RECOGNIZER_FIGURES = ("frames_checked", "frames_matched", "worst", "match_rate")
_KEYPOINT_FIGURES = ("body_ap", "head_ap", "face_nme", "face_expression_nme", "arms_ap", "legs_ap", "hands_ap")


def summary_figures(verification: dict[str, Any], recognizers: Iterable[str]) -> dict[str, Any]:
    """Nest a record's flat verification figures the way ``summary.json`` shows them.

    ``{"recognizers": {NAME: {frames_checked, frames_matched, worst, match_rate}}, "keypoints":
    {body_ap, head_ap, face_nme, face_expression_nme, arms_ap, legs_ap, hands_ap}, "face_realism": {...}
    (when measured), ...}``; keypoint figures that were
    not measured are ``null``, and the remaining figures (frames, leaks, text_boxes, ...) stay as
    they are.
    """
    rest = dict(verification)
    nested: dict[str, Any] = {"recognizers": {}, "keypoints": {k: rest.pop(k, None) for k in _KEYPOINT_FIGURES}}
    if "face_realism_frames" in rest:
        nested["face_realism"] = {k: rest.pop(k, None) for k in REALISM_FIGURES}
    for name in recognizers:
        if f"{name}_frames_checked" in rest:
            nested["recognizers"][name] = {k: rest.pop(f"{name}_{k}", None) for k in _RECOGNIZER_FIGURES}
    return {**nested, **rest}


def _summary(meta, profile, records, gallery, clinical, key_id: str, finished: str) -> dict[str, Any]:
    from clinrelease.dicom.annex_e import EDITION

    counts = {RELEASED: 0, QUARANTINED: 0, ERROR: 0}
    for r in records:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    with_audio = sum(
        1 for r in records
        if r.get("verification", {}).get("audio_streams_dropped") or any(x.startswith(AUDIO_REASON) for x in r["reasons"])
    )
    return {
        "tool": {"name": "clinrelease", "version": __version__},
        "release_id": meta["release_id"],
        "profile": profile.name,
        "profile_digest": profile.digest,
        "ps315_edition": EDITION,
        "key_id": key_id,
        "started": meta["started"],
        "finished": finished,
        "audio": f"never released: only the pictures are re-encoded and audio objects are quarantined; {with_audio} input(s) had sound",
        "counts": counts,
        "gallery": gallery,
        "clinical": clinical,
        "items": [
            {
                "item_id": r["item_id"],
                "status": r["status"],
                "reasons": released_reasons(r),
                "output": r.get("output"),
                "verification": summary_figures(r.get("verification", {}), profile.verify.recognizers),
            }
            for r in records
        ],
    }


def _start_record(meta: dict[str, Any], profile) -> dict[str, Any]:
    from clinrelease.dicom.annex_e import EDITION
    from clinrelease.dicom.deid_options import BASIC_PROFILE_CODE, OPTION_CODES
    from clinrelease.models import MODELS, file_digest, model_path
    from clinrelease.verify.decision import checks_for

    models = []
    for name in MODELS:
        if name.startswith("sample_"):
            continue
        try:
            models.append({"name": name, "file": model_path(name).name, "sha256": file_digest(model_path(name))})
        except ClinReleaseError:
            continue
    return {
        "release_id": meta["release_id"],
        "nonce": meta.get("nonce", ""),
        "tool": {"name": "clinrelease", "version": __version__},
        "profile": {"name": profile.name, "sha256": profile.digest.removeprefix("sha256:")},
        "ps315": {
            "edition": EDITION,
            "options": [{"code": code, "meaning": meaning} for code, meaning in
                        [BASIC_PROFILE_CODE, *(OPTION_CODES[o] for o in profile.deid.options)]],
        },
        "models": models,
        "thresholds": {c.name: {"op": c.op, "threshold": c.limit} for c in checks_for(profile)},
        "operator": meta.get("operator") or "",
        "irb": meta.get("irb") or "",
        "dua": meta.get("dua") or "",
        "models_disposed": meta.get("models_disposed", []),
        "started": meta["started"],
        **_generator_notice(profile),
    }


def _generator_notice(profile) -> dict[str, Any]:
    """The surrogate generator's licence, for the records of a release whose profile uses it."""
    if profile.anonymizer is None or profile.anonymizer.name != "swap" or profile.anonymizer.pool != "generator":
        return {}
    from clinrelease.face.generator import LICENCE

    return {"surrogate_generator": {"pool": "generator", "licence": LICENCE}}


def _item_audit_fields(record: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    from clinrelease.verify.decision import SITE_ONLY

    fields: dict[str, Any] = {
        "item_id": record["item_id"],
        "verdict": RELEASED if record["status"] == RELEASED else QUARANTINED,
        "reasons": released_reasons(record),
        "checks": record.get("audit_checks", []),
        "figures": record.get("verification", {}),
    }
    fields["output"] = (
        {"path": record["output"], "sha256": record["output_sha256"], "uid": record.get("output_uid", "")}
        if record["status"] == RELEASED
        else None
    )
    internal = {
        "original_sha256": record["input_sha256"], "input": record["input"],
        "reasons_full": [*record["reasons"], *(SITE_ONLY + d for d in record.get("reason_details", []))],
    }  # fmt: skip
    if "surrogate" in record.get("faces", {}):
        # the key's surrogate decision (counter, recognizers' closest values on the patient): site only
        internal["surrogate"] = record["faces"]["surrogate"]
    return fields, internal


def _report_visuals(records: list[dict[str, Any]], paths: ReleasePaths, profile) -> tuple[list[Any], list[Any]]:
    """What the site's copy and the released copy of the QA report show, per item.

    The site's copy names inputs, shows contact sheets (original frames: the patient's face and
    burned-in text) and what the checks found; the released copy names items by their keyed id and
    carries every figure, plot and PHI-free reason.
    """
    from clinrelease.report import ItemVisuals
    from clinrelease.verify.decision import SITE_ONLY

    site, released = [], []
    for r in records:
        sheet = None
        sheet_path = paths.visuals / f"{r['item_id']}.png"
        if sheet_path.is_file():
            import cv2

            bgr = cv2.imread(str(sheet_path), cv2.IMREAD_COLOR)
            sheet = None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        series = r.get("series", {})
        visual = ItemVisuals(
            input=r["input"],
            status=r["status"],
            reasons=[*r["reasons"], *(SITE_ONLY + d for d in r.get("reason_details", []))],
            output=r.get("output"),
            contact_sheet=sheet,
            similarity_series={k: [tuple(p) for p in v] for k, v in series.get("similarity", {}).items()},
            thresholds={k: c.threshold for k, c in profile.verify.recognizers.items()},
            oks_series=[tuple(p) for p in series.get("oks", [])],
            header_changes=[(c.get("tag", ""), c.get("name", ""), c.get("action", "")) for c in r.get("header_changes", [])],
            figures=_flat_figures(r.get("verification", {})),
            endpoints=r.get("verification", {}).get("endpoints") or {},
        )
        site.append(visual)
        released.append(dataclasses.replace(
            visual, input=f"item {r['item_id']}", reasons=released_reasons(r), contact_sheet=None,
            header_changes=[tuple(c) for c in r.get("released_header_changes", [])],
        ))  # fmt: skip
    return site, released


def _write_report(report_dir: Path, summary: dict[str, Any], site: list[Any], released: list[Any], paths: ReleasePaths) -> Path:
    from clinrelease.report import write_report

    write_report(paths.work / "report", summary, site)
    return write_report(report_dir, {**summary, "contact_sheets": "in the site's copy of this report only (WORK/report/index.html)"}, released)


def _flat_figures(verification: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in verification.items():
        if isinstance(value, dict):
            for sub, v in value.items():
                if isinstance(v, (int, float, str, bool)) or v is None:
                    flat[f"{key}.{sub}"] = v
        elif isinstance(value, (int, float, str, bool)) or value is None:
            flat[key] = value
    return flat
