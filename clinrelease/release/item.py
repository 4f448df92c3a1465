"""One item's way through the stages, in order: read, header de-identification, then either the
header-only route (pixels carried over) or the video route (:mod:`clinrelease.release.video`), the
decision, escrow, and the staged output moved to ``WORK/ready`` or the quarantine.

:func:`process_item` is a pure, idempotent function of the item and a picklable
:class:`~clinrelease.release.work.ItemContext` that returns an unsigned
:class:`~clinrelease.release.record.ItemRecord`; any failure makes the item fail closed (quarantine
or error), never the run.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from clinrelease.crypto.digest import sha256_file
from clinrelease.crypto.kdf import derive_hex
from clinrelease.errors import STORAGE_ERRNOS, ClinReleaseError, InputError, VerificationError
from clinrelease.items import InputItem
from clinrelease.release.paths import ReleasePaths
from clinrelease.release.record import ItemRecord, Status, load_record, write_json
from clinrelease.release.work import ItemContext, ItemWork, identifying_strings, resume_digest

#: DICOM objects up to this size are read once, pixels and all (a larger one is most likely a video)
WHOLE_READ_BYTES = 8 << 20


def process_item(item: InputItem, ctx: ItemContext) -> ItemRecord:
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
    previous = load_record(record_path)
    # a record without the item's identifying strings predates the released-text scan: redo it
    if previous and previous.resume_digest == digest and previous.identifying_strings is not None and _record_still_valid(previous, paths):
        previous.resumed = True
        return previous
    # a killed run may have left this item's staged output behind (never in OUT); names are matched
    # as text, since a glob pattern is a regex compiled for each item
    for stale in os.scandir(paths.staging):
        if item.item_id in stale.name:
            shutil.rmtree(stale.path) if stale.is_dir() else Path(stale.path).unlink(missing_ok=True)

    started = time.perf_counter()
    record = ItemRecord(
        item_id=item.item_id,
        input=item.relpath,
        kind=item.kind,
        resume_digest=digest,
        input_sha256=input_sha,
        input_commitment=derive_hex(ctx.release_key, "commitment", input_sha),
    )
    work = ItemWork(item, ctx, record, phi=identifying_strings({}, item, None))
    if unreadable:
        record.status = Status.ERROR
        work.reasons.append(unreadable)
    elif item.duplicate_of:
        from clinrelease.verify.decision import duplicate_reason

        work.reasons.append(duplicate_reason(item.duplicate_of))
    else:
        _guarded(work, _run_stages)
    record.reasons = work.reasons
    record.reason_details = work.details
    if record.status is None:
        record.status = Status.QUARANTINED if work.reasons else Status.RELEASED
    _guarded(work, _finish)
    if record.status != Status.RELEASED:
        _quarantine(work)
    # site only: merge scans every released text for these (the input's name is never released)
    record.identifying_strings = work.patient_phi
    record.seconds = round(time.perf_counter() - started, 3)
    record.save(record_path)
    return record


def _guarded(work: ItemWork, stage: Callable[[ItemWork], None]) -> None:
    """Run ``stage``; any failure makes the item fail closed (quarantine or error), never the run."""
    try:
        stage(work)
    except VerificationError as exc:
        _reason(work, "", exc)
    except InputError as exc:
        work.record.status = Status.ERROR
        _reason(work, "input error: ", exc)
    except ClinReleaseError as exc:
        work.record.status = Status.ERROR
        _reason(work, f"{type(exc).__name__}: ", exc)
    except Exception as exc:  # a codec or model failure on one odd input must not stop the release
        if isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS:
            raise  # a full disk fails every item after this one: the run stops, the release stays as it was
        work.record.status = Status.ERROR
        from clinrelease.verify.decision import unexpected_reason

        # a library's message may quote the file's name or a value: the site's copy only
        reason, detail = unexpected_reason(exc)
        work.reasons.append(reason)
        work.details.append(detail)
    if work.reasons and work.record.status == Status.RELEASED:
        work.record.status = Status.ERROR


def _reason(work: ItemWork, prefix: str, exc: ClinReleaseError) -> None:
    from clinrelease.verify.decision import error_reason

    reason, detail = error_reason(prefix, exc.message, str(exc.__cause__ or ""))
    work.reasons.append(reason)
    if detail is not None:
        work.details.append(detail)


def _record_still_valid(record: ItemRecord, paths: ReleasePaths) -> bool:
    """A previous record counts only if its released file is still there, unchanged.

    Quarantined items are not redone (the verdict would be the same); errors are (they may have
    been transient: a missing model, a full disk).
    """
    if record.status != Status.RELEASED:
        return record.status == Status.QUARANTINED
    out = paths.released_file(record)
    return out is not None and sha256_file(out) == record.output_sha256


def _run_stages(work: ItemWork) -> None:
    from clinrelease.dicom.deid import Deidentifier, patient_sources, read_dataset, refuse_media_directory
    from clinrelease.dicom.plain_video import container_header
    from clinrelease.dicom.sop_classes import AUDIO_REASON, audio_object, is_mpeg, is_photographic, is_video
    from clinrelease.dicom.video import open_video, read_dicom_header

    item, ctx, record = work.item, work.ctx, work.record
    profile = ctx.profile()
    source = None
    whole = False
    if item.kind == "container":
        source = open_video(item.path)
        header = container_header(item.metadata, record.input_sha256)
        record.container_metadata_keys = sorted(source.info.container_metadata)
    else:
        # a small object is read whole once: if it takes the header-only route its pixels are
        # carried over from this read, and a video's pixel data is read by the video route
        whole = item.path.stat().st_size <= WHOLE_READ_BYTES
        header = read_dicom_header(item.path, whole=whole)
        if audio_object(header):
            raise VerificationError(f"{AUDIO_REASON}: the file is a {audio_object(header)} object")
    sources = patient_sources(header)
    header_phi = sources.strings
    work.patient_phi = list(header_phi)
    work.phi = identifying_strings(header_phi, item, source)
    video = is_video(header, container=item.kind == "container")
    faces_on = bool(video and profile.faces.enabled and profile.anonymizer is not None)
    options = list(profile.deid.options)
    # pixels are decoded and re-encoded only when a pixel stage needs them (or a plain video must
    # become DICOM); otherwise the original pixel data is carried over untouched
    # a profile that verifies faces without anonymizing them still gets its checks run on the pixels
    # (fail closed: a visible face then fails them) instead of having them silently dropped
    face_checks = bool(profile.verify.recognizers) or bool(profile.verify.residual_faces)
    # audio is never released: pixel data that multiplexes sound with the pictures (an MP4 or MPEG-2
    # program stream) goes through the pixel route, which re-encodes the pictures alone
    if video and source is None and is_mpeg(header):
        source = open_video(item.path)
    audio = bool(source and source.info.audio_streams)
    video = item.kind == "container" or faces_on or (video and ("clean_pixel_data" in options or face_checks or audio))
    if video and source is None:
        source = open_video(item.path)
    read = header
    if not video:
        if whole:
            refuse_media_directory(header, item.path)
        else:
            header = read_dataset(item.path)
    elif whole:
        header = read_dicom_header(item.path)  # the video route works from the header alone
    if not faces_on and "clean_recognizable_visual_features" in options:
        if is_photographic(header):
            raise VerificationError(
                "the profile requires Clean Recognizable Visual Features, and faces are anonymized in video only"
            )
        options.remove("clean_recognizable_visual_features")
    if not video and "clean_pixel_data" in options:
        options.remove("clean_pixel_data")
    record.deid_options = options
    deidentifier = Deidentifier(options, ctx.release_key, keep=profile.deid.keep, safe_private_extra=profile.deid.safe_private_extra)
    result = deidentifier.deidentify(
        header, pixels_cleaned="clean_pixel_data" in options, faces_anonymized=faces_on,
        # found on the dataset read above: a header read again is a new dataset, searched again
        sources=sources if header is read else None,
    )
    record.pseudonym = result.pseudonym
    record.header_changes = [{"tag": c.tag, "name": c.name, "action": c.action, "path": c.path, "reason": c.reason} for c in result.changes]
    if video:
        from clinrelease.release.video import release_video

        release_video(work, source, header, result, faces_on)
    else:
        _release_header_only(work, header, result)


def _release_header_only(work: ItemWork, original, result) -> None:
    """A still or non-image object: the de-identified header with the pixels as they are."""
    from pydicom import dcmread

    from clinrelease.dicom.deid import encode_deidentified, output_relpath
    from clinrelease.dicom.residual import residual_phi
    from clinrelease.verify.decision import ItemReports, checks_for, report_figures
    from clinrelease.verify.leaks import scan_bytes

    item, ctx, record = work.item, work.ctx, work.record
    staged = ctx.paths.staging / f"{item.item_id}.dcm"
    work.staged = staged
    # encoded once: the bytes written are the bytes every check below judges
    data = encode_deidentified(result.dataset)
    staged.write_bytes(data)
    record.output = "data/" + output_relpath(result.dataset)
    record.output_uid = str(result.dataset.get("SOPInstanceUID", ""))
    reports = ItemReports()
    if ctx.profile().verify.leak_scan:
        reports.leaks = scan_bytes(data, identifying_strings(result.original_phi_sources, item, None) or work.phi, encoder_text=False)
    # a large object is parsed from the file it went to (the same bytes): memory holds it once
    released = io.BytesIO(data) if len(data) <= WHOLE_READ_BYTES else staged
    del data
    reports.header = residual_phi(original, dcmread(released), result)
    figures = report_figures(reports)
    # the pixels are carried over untouched: only the header and the file's bytes are judged
    work.decide(figures, [c for c in checks_for(ctx.profile()) if c.group in ("header", "leaks")], reports)
    record.verification = figures


def _finish(work: ItemWork) -> None:
    """Escrow the original, then move the staged output to ready/ for the merge, in one atomic rename."""
    item, ctx, record = work.item, work.ctx, work.record
    if record.status != Status.RELEASED or work.staged is None or not work.staged.exists():
        return
    target = ctx.paths.ready / record.output
    target.parent.mkdir(parents=True, exist_ok=True)
    record.output_sha256 = sha256_file(work.staged)
    if ctx.escrow is not None:
        entry = ctx.escrow.escrow(item.path, record.output_uid or "", record.output_sha256)
        record.escrow = {"object_id": getattr(entry, "object_id", None), "wrap_id": getattr(entry, "wrap_id", None)}
    os.replace(work.staged, target)


def _quarantine(work: ItemWork) -> None:
    """Put a failing item's staged output (if any) and its reasons into the quarantine folder."""
    item, record = work.item, work.record
    qdir = work.ctx.paths.quarantine / item.item_id
    qdir.mkdir(parents=True, exist_ok=True)
    if work.staged is not None and work.staged.exists():
        os.replace(work.staged, qdir / "anonymized.dcm")
        record.quarantined_output = str(qdir / "anonymized.dcm")
    write_json(qdir / "reasons.json", {
        "input": item.relpath, "status": record.status.value, "reasons": record.reasons,
        "details_with_phi": record.reason_details,
    })  # fmt: skip
    record.output = None
