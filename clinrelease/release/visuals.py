"""What the reviewer and the merge get from one video's verification pass: the contact sheet (original
and released frames with the keypoints compared) and the patient's face embeddings for the
release-level gallery attack (:mod:`clinrelease.release.gallery`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from clinrelease.release.work import ItemWork

CONTACT_SHEET_FRAMES = 4


def visuals(work: ItemWork, frame_pairs: Iterable[tuple[np.ndarray, np.ndarray]], total: int, analysis, verify) -> None:
    """Contact sheet for the report, and face embeddings for the release-level gallery attack, from
    the (original, released) frames of a video of ``total`` frames (read up to the last pick)."""
    import cv2

    from clinrelease.report import compose_contact_sheet
    from clinrelease.verify.reid import face_embeddings

    if not total:
        return
    if analysis is not None and analysis.patient is not None and analysis.patient.faces:
        candidates = analysis.patient.frame_indices
    else:
        candidates = list(range(total))
    picks = sorted({candidates[int(i)] for i in np.linspace(0, len(candidates) - 1, min(CONTACT_SHEET_FRAMES, len(candidates)))})
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
            # aligned as the per-frame re-id check aligns them: a head tilted 45 degrees embedded as
            # it lay gave dlib vectors near each other for any two tilted faces, and the attack
            # "re-identified" a patient the per-frame check found 0.72 away (brother.mkv turned 45)
            for rec in recognizers:
                pair = face_embeddings(rec, orig, anon, face)
                if pair is not None:
                    for side, vec in (("orig", pair[0]), ("anon", pair[1])):
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
