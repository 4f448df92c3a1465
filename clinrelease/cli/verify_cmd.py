"""``clinrelease verify ORIGINAL ANONYMIZED``: run the release checks on any pair of videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from clinrelease.cli.app import app
from clinrelease.cli.common import EXIT_FAILED, JsonOption, emit_json, err_console, handles_errors, out_console, styled


@app.command("verify")
@handles_errors
def verify_command(
    original: Path = typer.Argument(..., help="The original video (DICOM video, MP4, MKV, ...)."),
    anonymized: Path = typer.Argument(..., help="Its anonymized counterpart (same frames)."),
    recognizer: list[str] = typer.Option(
        ["dlib", "sface"], "--recognizer", "-r", help="Face recognizer that must not match (repeat for several): dlib, sface, arcface."
    ),
    sample_every: int = typer.Option(5, "--sample-every", min=1, help="Check every Nth frame for re-id and keypoints."),
    text_every: int = typer.Option(30, "--text-every", min=1, help="Look for burned-in text on every Nth frame (plus the last)."),
    phi: list[str] = typer.Option([], "--phi", help="An identifying string that must not appear in the output's bytes (repeat)."),
    profile: str | None = typer.Option(
        None, "--profile", help="Take the checks and thresholds from this release profile (default: basic, plus the --recognizer checks)."
    ),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="Folder of site model packs (arcface); default $CLINRELEASE_MODEL_DIR."),
    no_keypoints: bool = typer.Option(False, "--no-keypoints", help="Skip the keypoint-preservation and face-realism checks."),
    no_text: bool = typer.Option(False, "--no-text", help="Skip the burned-in text check."),
    json_: bool = JsonOption,
) -> None:
    """Check that ANONYMIZED de-identifies ORIGINAL and keeps its clinical signal.

    Runs re-identification (each recognizer on the original vs anonymized face of every tracked face
    on sampled frames), keypoint preservation (AP@[.5:.95] per body part, face NME), burned-in text
    and the PHI/encoder-text byte scan. Exit 0 when every check passes, 1 when one fails.
    """
    from clinrelease.verify.decision import checks_for, judge
    from clinrelease.verify.pair import PairOptions, verify_pair
    from clinrelease.verify.reid import profile_recognizers

    settings = _profile_for(profile, recognizer)
    verify = settings.verify
    skipped = {"header", "frames", "faces", *(("keypoints", "realism") if no_keypoints else ()), *(("text",) if no_text else ())}
    # a pair has no header to compare, its frame counts are checked on opening, and the faces left
    # unanonymized are what the recognizers' residual search finds (no anonymized tracks to cover)
    checks = [c for c in checks_for(settings, text=verify.ocr.enabled) if c.group not in skipped]
    endpoints = verify.endpoints.judged() if verify.endpoints is not None else {}
    options = PairOptions(
        # a profile that judges no face still reports what the recognizers find
        recognizers=list(profile_recognizers(verify, str(model_dir) if model_dir else None).values()) or list(recognizer),
        sample_every=sample_every,
        text_every=text_every,
        phi=list(phi),
        keypoints=not no_keypoints,
        text=not no_text,
        model_dir=str(model_dir) if model_dir else None,
        endpoints=endpoints,
        endpoint_sample_every=verify.endpoints.sample_every if verify.endpoints is not None else None,
    )
    if not json_:
        err_console.print(f"verifying {anonymized} against {original} ...")
    reports, info = verify_pair(original, anonymized, options)
    verdict = judge(reports, checks)
    if json_:
        emit_json({"info": info, "verdict": {k: v for k, v in verdict.to_dict().items() if k != "rows"}, "checks": verdict.rows, "reports": reports.to_dict()})
    else:
        _print_text(info, reports, verdict)
    if not verdict.released:
        raise typer.Exit(EXIT_FAILED)


def _profile_for(name: str | None, recognizers: list[str]):
    """The named profile; without one, ``basic`` with the ``--recognizer`` checks at the thresholds a
    profile gets by default (:class:`clinrelease.profiles.VerifySettings`) and the burned-in text check."""
    import dataclasses
    from types import MappingProxyType

    from clinrelease.profiles import OcrSettings, RecognizerCheck, VerifySettings, load_profile

    if name is not None:
        return load_profile(name)
    basic = load_profile("basic")
    defaults = VerifySettings().recognizers
    checks = {r: defaults.get(r, RecognizerCheck(threshold=None)) for r in recognizers}  # type: ignore[arg-type]
    return dataclasses.replace(basic, verify=dataclasses.replace(basic.verify, recognizers=MappingProxyType(checks), ocr=OcrSettings()))


def _f(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _print_text(info: dict[str, Any], reports: Any, verdict: Any) -> None:
    from rich.table import Table

    out_console.print(f"analysis: {info['analysis']}, {info['tracks']} face track(s), {info['frames']} frames")
    if reports.reid is not None:
        table = Table("recognizer", "threshold", "frames checked", "frames matched", "worst similarity", "matched frames", title="re-identification")
        for name, res in reports.reid.results.items():
            rule = ("<" if not res.higher_is_same else ">=") + f" {res.threshold}"
            table.add_row(name, rule, str(res.frames_checked), str(res.frames_matched), _f(res.worst_similarity), ", ".join(map(str, res.matched_frames[:12])))
        out_console.print(table)
        if reports.reid.residual_faces:
            out_console.print(f"residual (untracked, recognizable) faces: {len(reports.reid.residual_faces)}")
    if reports.keypoints is not None:
        kp = reports.keypoints
        table = Table("part", "AP@[.5:.95]", title=f"keypoints ({kp.frames_checked} frames)")
        for part, value in kp.part_ap().items():
            table.add_row(part, _f(value))
        table.add_row("body AP50 / AP75", f"{_f(kp.body_ap50)} / {_f(kp.body_ap75)}")
        table.add_row("face NME", _f(kp.face_nme, 4))
        table.add_row("face movement NME", _f(kp.face_expression_nme, 4))
        out_console.print(table)
        if kp.frames_without_person:
            out_console.print(f"no person in the original at frames {kp.frames_without_person}")
    if reports.realism is not None:
        fr = reports.realism
        table = Table("figure", "value", title=f"face realism ({fr.frames_checked} frames of the patient's face)")
        table.add_row("face score, released / original (YuNet)", _f(fr.face_score_ratio))
        table.add_row("face mesh found on the released face", _f(fr.mesh_presence))
        table.add_row("eye opening: correlation / deviation", f"{_f(fr.eye_correlation)} / {_f(fr.eye_deviation)}")
        table.add_row("mouth opening: correlation / change", f"{_f(fr.mouth_correlation)} / {_f(fr.mouth_opening_change)}")
        table.add_row("mouth-corner lift change", _f(fr.corner_lift))
        out_console.print(table)
    if reports.endpoints is not None:
        ep = reports.endpoints
        hand = f", {ep.hand.lower()} hand" if ep.hand else ""
        table = Table("endpoint", "original", "released", "difference", "tolerance", "outcome", title=f"clinical endpoints ({ep.frames_checked} frames{hand})")
        table.columns[0].no_wrap = True
        for r in ep.results:
            table.add_row(r.name, _f(r.original), _f(r.released), _f(r.difference), r.tolerance, r.status)
        out_console.print(table)
        # reasons under the table: a column of them would fold every row on a console
        for r in ep.results:
            if r.reason:
                out_console.print(f"  {r.name} ({r.unit}): {r.status}, {r.reason}", highlight=False, markup=False)
    if reports.text is not None:
        out_console.print(f"burned-in text: {len(reports.text.found)} box(es) on {len(reports.text.frames_scanned)} scanned frames")
        for tb in reports.text.found[:10]:
            out_console.print(f"  frame {tb.frame}: {tb.text!r} score {tb.score:.2f} at {tb.box}", highlight=False, markup=False)
    if reports.leaks is not None:
        out_console.print(f"PHI/encoder text in the output bytes: {len(reports.leaks)}")
        for leak in reports.leaks[:10]:
            out_console.print(f"  offset {leak.offset}: {leak.kind} {leak.variant!r} ({leak.encoding}) ...{leak.context}...", highlight=False, markup=False)
    if verdict.released:
        out_console.print(styled("PASS:", "bold green", "every check passed"))
    else:
        out_console.print(styled("FAIL:", "bold red"))
        for reason in verdict.reasons:
            out_console.print(f"  - {reason}", highlight=False, markup=False)
