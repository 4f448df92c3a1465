"""One video item's pixel stages, in order: find and track faces, decide the patient's surrogate,
anonymize, clean burned-in text, encode, then one verification pass over the original and released
frames (:mod:`clinrelease.verify.walk`), the leak scan and the header check, and the decision."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from clinrelease.release.anonymizers import build_anonymizers, decided_generator_pool, surrogate_decision
from clinrelease.release.visuals import visuals
from clinrelease.release.work import ItemWork, identifying_strings


def endpoint_figures(report) -> dict[str, Any]:
    """An endpoint report as the record's table (endpoint -> original, released, difference,
    tolerance, status, reason); the flat figures its checks judge are
    :func:`clinrelease.verify.decision.report_figures`'."""
    return {
        r.name: {"original": r.original, "released": r.released, "difference": r.difference, "change": r.change,
                 "tolerance": r.tolerance, "unit": r.unit, "status": r.status, "reason": r.reason}
        for r in report.results
    }




def release_video(work: ItemWork, source, header, result, faces_on: bool) -> None:
    """Anonymize, encode, verify one video; stage the output for the item's finish."""
    from pydicom import dcmread

    from clinrelease.clean import clean_video_text
    from clinrelease.dicom.deid import output_relpath
    from clinrelease.dicom.residual import residual_phi
    from clinrelease.dicom.video import open_video
    from clinrelease.dicom.writer import write_dicom_video
    from clinrelease.verify.decision import checks_for, report_figures
    from clinrelease.verify.leaks import scan_bytes
    from clinrelease.verify.ocr import TextScan
    from clinrelease.verify.walk import ORIGINAL, POSE, RECOGNIZERS, RELEASED, verify_frames

    item, ctx, record = work.item, work.ctx, work.record
    profile = ctx.profile()
    verify = profile.verify
    info = source.info
    clean_text = "clean_pixel_data" in record.deid_options and verify.ocr.enabled

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
        from clinrelease.face.pipeline import anonymize_frames
        from clinrelease.face.small import SWAP_MIN_FACE_PX, plan_methods, small_faces
        from clinrelease.verify.reid import profile_recognizers

        # small and turned-away faces of the tracks the swap anonymizes, decided before any pixel changes
        swapped = tuple(role for role, name in (("patient", profile.anonymizer.name), ("bystander", profile.anonymizer.bystander)) if name == "swap")
        methods = plan_methods(
            analysis, swapped, small_face=profile.faces.small_face, profile_view=profile.faces.profile_view, yaw_limit=profile.faces.profile_yaw,
            guard=profile_recognizers(profile.verify),
        )  # fmt: skip
        started = time.perf_counter()
        decision = surrogate_decision(ctx, profile, analysis, source, result.pseudonym, methods)
        stages["surrogate"] = time.perf_counter() - started
        counter = 0 if decision is None else decision.counter
        pool = decided_generator_pool(decision, result.pseudonym)
        patient, bystander = build_anonymizers(profile, ctx.release_key, result.pseudonym, counter=counter, pool=pool)
        frames = anonymize_frames(frames, analysis, patient=patient, bystander=bystander, methods=methods)
        bystanders = sum(1 for t in analysis.tracks if t.role != "patient")
        record.faces = {
            "tracks": len(analysis.tracks),
            "patient_frames": len(analysis.patient.faces) if analysis.patient else 0,
            "bystander_tracks": bystanders,
            "bystander_treatment": profile.anonymizer.bystander if bystanders else None,
            "methods": methods.to_dict(),
        }
        if decision is not None:
            record.faces["surrogate"] = decision.to_dict()
        small = small_faces(analysis)
        record.faces["small"] = {
            "min_px": SWAP_MIN_FACE_PX,
            "method": profile.faces.small_face,
            "frames_by_track": {str(k): v for k, v in small.items()},
        }
    burned_in = TextScan(verify.ocr.sample_every)
    legs = None
    if clean_text:
        from functools import partial

        from clinrelease.face.pipeline import face_outlines, hand_outlines
        from clinrelease.verify.keypoints import LegFinder

        faces = partial(face_outlines, analysis) if analysis is not None else None
        hands = partial(hand_outlines, analysis) if analysis is not None else None
        legs = LegFinder()
        frames = clean_video_text(frames, sample_every=verify.ocr.sample_every, scan=burned_in, faces=faces, hands=hands, legs=legs)

    staged = ctx.paths.staging / f"{item.item_id}.dcm"
    work.staged = staged
    started = time.perf_counter()
    try:
        written = write_dicom_video(
            staged,
            result.dataset,
            frames,
            fps=info.fps,
            syntax=profile.output.syntax,
            quality=profile.output.quality,
        )
    finally:
        if legs is not None:
            legs.close()
    record.output = "data/" + output_relpath(result.dataset)
    record.output_uid = written.sop_instance_uid
    if faces_on:  # the small faces' guard chose methods while the frames were rendered
        record.faces["methods"] = methods.to_dict()
    stages["anonymize_encode"] = time.perf_counter() - started

    output = open_video(staged)
    # only decoded pictures are written: any sound beside them stays behind (and the report says so)
    figures: dict[str, Any] = {"frames": written.frames, "audio_streams_dropped": info.audio_streams}
    figures["frame_count_difference"] = abs(info.frames - written.frames) if info.frames else 0
    treated = record.faces or {}
    if "surrogate" in treated:
        figures["surrogate_counter"] = treated["surrogate"]["counter"]
        figures["surrogate_decided"] = treated["surrogate"]["decided"]
    if "small" in treated:
        from clinrelease.face.pipeline import frame_ranges

        # where a face is too small for the swap to carry a new identity (a quarantine there is
        # the face's size, not the key): per face, per frame, in the record and the report
        small = treated["small"]["frames_by_track"]
        figures["small_face_frames"] = len({f for frames in small.values() for f in frames})
        figures["small_face_at"] = "; ".join(f"face {track}: frames {frame_ranges(frames)}" for track, frames in small.items())
        figures["small_face_method"] = treated["small"]["method"]
    if "methods" in treated:
        _method_figures(work, treated, figures)
    if clean_text:
        on_face = sum(tb.on_face for tb in burned_in.found)
        figures["burned_in_text_found"] = len(burned_in.found)
        figures["burned_in_text_cleaned"] = sum(tb.painted for tb in burned_in.found)
        figures["burned_in_text_cleaned_at"] = burned_in.where()
        figures["burned_in_text_on_face"] = on_face
        figures["burned_in_text_on_face_at"] = burned_in.where("face")
        figures["burned_in_glyphs_left"] = sum(tb.glyph and not tb.on_face for tb in burned_in.found)
        figures["burned_in_glyphs_left_at"] = burned_in.where("glyph")
    # the patient's frames blurred on purpose carry no swap for the realism check to judge
    skip = methods.blurred_frames(analysis.patient.track_id) if faces_on and analysis.patient else frozenset()
    plan = walk_plan(verify, analysis, info.fps, clean_text, realism_skip=skip, painted=burned_in.painted_at if clean_text else None)
    # the sheet draws the pose and embeds faces for the gallery
    sheet = {"contact_sheet": (lambda o, r: visuals(work, zip(o, r), written.frames, analysis, verify), (ORIGINAL, RELEASED), {POSE, RECOGNIZERS})}
    # one decode of each video feeds every check (and the contact sheet's picks)
    walked = time.perf_counter()
    reports, _, _, seconds = verify_frames(source.frames(), output.frames(), analysis, plan, extra=sheet)
    stages["verify"] = time.perf_counter() - walked
    stages.update({f"verify_{k}": v for k, v in seconds.items()})
    if reports.keypoints is not None:
        figures["keypoints_person"] = "patient" if plan.person is not None else "most prominent"
    if reports.endpoints is not None:
        figures["endpoints"] = endpoint_figures(reports.endpoints)
    phi = identifying_strings(result.original_phi_sources, item, source)
    if verify.leak_scan:
        started = time.perf_counter()
        reports.leaks = scan_bytes(staged, phi)
        stages["leak_scan"] = time.perf_counter() - started
    reports.header = residual_phi(header, dcmread(staged, stop_before_pixels=True), result)

    judged = {**figures, **report_figures(reports)}
    work.decide(judged, checks_for(profile, text=clean_text), reports)
    # the endpoints' flat figures are in their table already (figures["endpoints"])
    record.verification = {k: v for k, v in judged.items() if not (k.startswith("endpoint_") or k == "endpoints_lost")}
    record.series = _series(reports)
    record.identifying_strings_count = len(phi)
    record.stage_seconds = {k: round(v, 3) for k, v in stages.items()}


def walk_plan(verify, analysis, fps: float, text: bool, realism_skip: frozenset[int] = frozenset(), painted=None):
    """The verification pass a release runs under the profile's ``verify`` settings (``text``: the
    burned-in text check, when the pixels were cleaned; ``painted``: where the cleaner painted each
    frame), as :class:`clinrelease.verify.walk.WalkPlan`."""
    from clinrelease.verify.reid import profile_recognizers
    from clinrelease.verify.walk import WalkPlan

    kp = verify.keypoints
    face = kp.face_nme_max is not None or kp.face_expression_nme_max is not None
    keypoints = any(getattr(kp, f"{p}_ap_min") is not None for p in ("body", "head", "arms", "legs")) or face
    person = patient_body(analysis) if keypoints and analysis is not None and len(analysis.tracks) > 1 else None
    endpoints = verify.endpoints.judged() if verify.endpoints is not None and verify.endpoints.tolerances else {}
    # counted at the profile's thresholds: the recorded frames_matched are what the decision judges
    recognizers = profile_recognizers(verify)
    return WalkPlan(
        sample_every=verify.sample_every, recognizers=tuple(recognizers.values()), residual_recognizer=recognizers.get("sface", "sface"),
        residual_faces=bool(verify.residual_faces), painted=painted, keypoints=keypoints, face=face, person=person,
        realism=verify.face_realism is not None, endpoints=endpoints, realism_skip=realism_skip,
        endpoint_sample_every=verify.endpoints.sample_every if endpoints else None, fps=fps,
        text_every=verify.ocr.sample_every if text else None,
    )  # fmt: skip


def _method_figures(work: ItemWork, faces: dict[str, Any], figures: dict[str, Any]) -> None:
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


def patient_body(analysis) -> Callable[[int], Any] | None:
    """Where the patient's body is in each frame (below their tracked face), so that keypoints are
    compared on the patient when a video shows several people; None without a patient track."""
    from clinrelease.verify.keypoints import body_box, head_roll

    patient = analysis.patient
    if patient is None:
        return None

    def box(index: int):
        face = patient.faces.get(index)
        return None if face is None else body_box(face.box, analysis.rows, analysis.columns, head_roll(face))

    return box



def _series(reports) -> dict[str, Any]:
    """Per-frame figures for the report's plots."""
    series: dict[str, Any] = {"similarity": {}, "oks": []}
    if reports.reid is not None:
        for name, res in reports.reid.results.items():
            series["similarity"][name] = [(s.frame, s.similarity) for s in res.samples]
    if reports.keypoints is not None:
        series["oks"] = [(f.frame, f.oks.get("body")) for f in reports.keypoints.per_frame if f.oks.get("body") is not None]
    return series

