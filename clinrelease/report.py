"""The QA report: one self-contained HTML file a compliance officer opens offline.

:func:`write_report` renders the release summary and, per item, its status and every quarantine
reason, a contact sheet (original | anonymized with keypoints overlaid), plots of per-frame
recognizer similarity against the threshold and of per-frame OKS, and the header changes (attribute
and action, never a value). Images are inlined as base64 PNG and plots as inline SVG; the page has no
script and a Content-Security-Policy that forbids loading anything, so it shows the same on a
machine with no network. The output depends only on its inputs (no clock, no random ids): re-running
a release writes a byte-identical report.
"""

from __future__ import annotations

import base64
import functools
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from clinrelease.files import write_atomic

#: recognizers whose value is a distance (a match is *below* the threshold); others are similarities
DISTANCE_RECOGNIZERS = frozenset({"dlib"})
#: what the PS3.15 action codes do, in words for the reader
ACTION_WORDS = {
    "D": "replaced with a dummy value",
    "Z": "emptied",
    "X": "removed",
    "K": "kept",
    "C": "cleaned",
    "U": "replaced with a keyed UID",
}
#: the widest image inlined; larger contact sheets are scaled down to keep the file small
MAX_IMAGE_WIDTH = 1600

_STATUS_CLASS = {"released": "ok", "quarantined": "bad"}
_SUMMARY_LABELS = {
    "profile": "Profile",
    "profile_digest": "Profile digest",
    "items_total": "Items",
    "released": "Released",
    "quarantined": "Quarantined",
    "key_id": "Release key id",
    "ps315_edition": "PS3.15 edition",
    "started": "Started",
    "finished": "Finished",
    "audio": "Audio",
    "time": "Time",
    "clinrelease_version": "clinrelease version",
    "output": "Release folder",
}
_SERIES_COLOURS = ("#1f77b4", "#9467bd", "#17becf", "#8c564b")


@dataclass
class ItemVisuals:
    """What the report shows for one item; the orchestrator fills it from the item's results.

    Attributes
    ----------
    input:
        The item's input path, relative to the run's input folder.
    status:
        ``"released"``, ``"quarantined"`` or another word (``"skipped"``, ``"error"``).
    reasons:
        Every reason the item was quarantined (empty when released).
    output:
        The released path, relative to the release folder, when released.
    contact_sheet:
        An RGB ``uint8`` image, e.g. from :func:`compose_contact_sheet`; ``None`` for no pixels.
    similarity_series:
        Per recognizer, ``(frame_index, value)`` comparing original and anonymized faces.
    thresholds:
        Per recognizer, the decision threshold of the profile.
    distance_recognizers:
        Recognizers whose value is a distance (a match below the threshold); default ``{"dlib"}``.
    oks_series:
        ``(frame_index, oks)`` between keypoints on the original and on the anonymized frame.
    header_changes:
        ``(tag, attribute name, action)``, e.g. ``("(0010,0010)", "PatientName", "Z")``. Never values.
    figures:
        Verification figures to list as they are (``{"body_ap": 0.97, "sface_worst": 0.21}``).
    endpoints:
        Clinical endpoints, original against released: name -> ``{original, released, difference,
        tolerance, unit, status, reason}`` (see :func:`clinrelease.release.endpoint_figures`).
    """

    input: str
    status: str
    reasons: list[str] = field(default_factory=list)
    output: str | None = None
    contact_sheet: np.ndarray | None = None
    similarity_series: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    thresholds: dict[str, float] = field(default_factory=dict)
    distance_recognizers: frozenset[str] = DISTANCE_RECOGNIZERS
    oks_series: list[tuple[int, float]] = field(default_factory=list)
    header_changes: list[tuple[str, str, str]] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    endpoints: dict[str, dict[str, Any]] = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------
# contact sheet
# --------------------------------------------------------------------------------------------------

KeypointArray = np.ndarray  # (N, 2) pixels, or (N, 3) with a visibility/confidence column


def compose_contact_sheet(
    pairs: Sequence[tuple[int, np.ndarray, np.ndarray]],
    keypoints: Sequence[tuple[KeypointArray | None, KeypointArray | None] | None] | None = None,
    *,
    edges: Sequence[tuple[int, int]] | None = None,
    tile_height: int = 240,
    pairs_per_row: int = 2,
    min_confidence: float = 0.5,
) -> np.ndarray:
    """Lay out frame pairs as ``original | anonymized`` tiles with their keypoints drawn.

    Parameters
    ----------
    pairs:
        ``(frame_index, original_rgb, anonymized_rgb)``; the two frames of a pair may differ in size.
    keypoints:
        Per pair, ``(original_points, anonymized_points)`` in the frames' pixel coordinates, either
        ``None``. Points with NaN coordinates or a third column below ``min_confidence`` are skipped.
    edges:
        Index pairs to join with lines (a skeleton, e.g. mediapipe's pose connections).
    tile_height:
        Height of each frame tile in pixels; widths keep each frame's aspect ratio.
    pairs_per_row:
        How many pairs sit side by side before the sheet wraps.
    min_confidence:
        Smallest visibility/confidence a point needs to be drawn.

    Returns
    -------
    numpy.ndarray
        The sheet, RGB ``uint8``.

    Raises
    ------
    ValueError
        When ``pairs`` is empty, a frame is not an RGB ``uint8`` image, or ``keypoints`` does not
        have one entry per pair.
    """
    if not pairs:
        raise ValueError("compose_contact_sheet needs at least one frame pair")
    if keypoints is not None and len(keypoints) != len(pairs):
        raise ValueError(f"keypoints has {len(keypoints)} entries for {len(pairs)} pairs")
    cells = []
    for i, (frame_index, original, anonymized) in enumerate(pairs):
        points = keypoints[i] if keypoints is not None else None
        tiles = []
        for which, image in enumerate((original, anonymized)):
            pts = points[which] if points is not None else None
            label = f"frame {frame_index}  " + ("original" if which == 0 else "anonymized")
            tiles.append(_tile(image, pts, edges, tile_height, label, min_confidence))
        cells.append(_hstack([tiles[0], _gap(tile_height + _LABEL_H, 2), tiles[1]]))
    rows = [
        _hstack(_interleave(cells[start : start + pairs_per_row], _gap(tile_height + _LABEL_H, 12)))
        for start in range(0, len(cells), max(1, pairs_per_row))
    ]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.ascontiguousarray(np.vstack(_interleave(rows, np.full((12, width, 3), 255, np.uint8))))


_LABEL_H = 22
_ORIGINAL_COLOUR = (0, 220, 0)
_ANONYMIZED_COLOUR = (255, 0, 200)


def _tile(
    image: np.ndarray,
    points: KeypointArray | None,
    edges: Sequence[tuple[int, int]] | None,
    height: int,
    label: str,
    min_confidence: float,
) -> np.ndarray:
    import cv2

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"frames must be RGB uint8 arrays of shape (rows, columns, 3), got {image.dtype} {image.shape}")
    scale = height / image.shape[0]
    width = max(1, round(image.shape[1] * scale))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    tile = cv2.resize(image, (width, height), interpolation=interpolation)
    if points is not None and len(points):
        colour = _ORIGINAL_COLOUR if "original" in label else _ANONYMIZED_COLOUR
        _draw_points(tile, np.asarray(points, dtype=np.float64), scale, edges, colour, min_confidence)
    band = np.full((_LABEL_H, width, 3), 245, np.uint8)
    cv2.putText(band, label, (4, _LABEL_H - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    return np.vstack([band, tile])


def _draw_points(
    tile: np.ndarray,
    points: np.ndarray,
    scale: float,
    edges: Sequence[tuple[int, int]] | None,
    colour: tuple[int, int, int],
    min_confidence: float,
) -> None:
    import cv2

    xy = points[:, :2] * scale
    visible = np.isfinite(xy).all(axis=1)
    if points.shape[1] > 2:
        visible &= points[:, 2] >= min_confidence
    radius = max(2, round(tile.shape[0] / 120))
    for a, b in edges or ():
        if a < len(xy) and b < len(xy) and visible[a] and visible[b]:
            cv2.line(tile, _pt(xy[a]), _pt(xy[b]), colour, 2, cv2.LINE_AA)
    for p in xy[visible]:
        cv2.circle(tile, _pt(p), radius, colour, -1, cv2.LINE_AA)
        cv2.circle(tile, _pt(p), radius, (0, 0, 0), 1, cv2.LINE_AA)


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def _gap(height: int, width: int) -> np.ndarray:
    return np.full((height, width, 3), 255, np.uint8)


def _hstack(images: list[np.ndarray]) -> np.ndarray:
    height = max(i.shape[0] for i in images)
    return np.hstack([np.pad(i, ((0, height - i.shape[0]), (0, 0), (0, 0)), constant_values=255) for i in images])


def _interleave(items: list[np.ndarray], gap: np.ndarray) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for item in items:
        if out:
            out.append(gap)
        out.append(item)
    return out


# --------------------------------------------------------------------------------------------------
# plots (inline SVG)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Axes:
    width: int = 560
    height: int = 190
    left: int = 48
    right: int = 12
    top: int = 22
    bottom: int = 30


def line_chart_svg(
    series: Mapping[str, Sequence[tuple[int, float]]],
    *,
    title: str,
    y_label: str,
    y_range: tuple[float, float] | None = None,
    threshold: float | None = None,
    match_below: bool = False,
) -> str:
    """An inline SVG line chart of per-frame values, with an optional threshold line.

    Parameters
    ----------
    series:
        Lines by name: ``(frame_index, value)`` points; non-finite values are left out.
    title, y_label:
        Chart title and y-axis label.
    y_range:
        Fixed ``(low, high)`` of the y axis; by default the data (and threshold) range, padded.
    threshold:
        Draws a dashed line and shades the side where a value counts as a match; points on that
        side are drawn as red dots.
    match_below:
        Whether values below ``threshold`` are matches (distances) rather than above (similarities).

    Returns
    -------
    str
        An ``<svg>`` element.
    """
    ax = _Axes()
    clean = {name: [(float(x), float(y)) for x, y in pts if math.isfinite(y)] for name, pts in series.items()}
    xs = [x for pts in clean.values() for x, _ in pts]
    ys = [y for pts in clean.values() for _, y in pts] + ([threshold] if threshold is not None else [])
    x0, x1 = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x1 == x0:
        x1 = x0 + 1
    if y_range is not None:
        y0, y1 = y_range
    else:
        y0, y1 = (min(ys), max(ys)) if ys else (0.0, 1.0)
        pad = (y1 - y0) * 0.1 or 0.1
        y0, y1 = y0 - pad, y1 + pad
    plot_w = ax.width - ax.left - ax.right
    plot_h = ax.height - ax.top - ax.bottom

    def sx(x: float) -> float:
        return ax.left + (x - x0) / (x1 - x0) * plot_w

    def sy(y: float) -> float:
        y = min(max(y, y0), y1)
        return ax.top + (y1 - y) / (y1 - y0) * plot_h

    parts = [
        f'<svg class="chart" width="{ax.width}" height="{ax.height}" '
        f'viewBox="0 0 {ax.width} {ax.height}" role="img" aria-label="{_e(title)}">',
        f"<title>{_e(title)}</title>",
        f'<rect x="{ax.left}" y="{ax.top}" width="{plot_w}" height="{plot_h}" fill="#fff" stroke="#999"/>',
        f'<text x="{ax.left}" y="14" class="ct">{_e(title)}</text>',
    ]
    if threshold is not None:
        ty = sy(threshold)
        zone_y, zone_h = (ty, ax.top + plot_h - ty) if match_below else (ax.top, ty - ax.top)
        parts.append(f'<rect class="zone" x="{ax.left}" y="{zone_y:.1f}" width="{plot_w}" height="{max(zone_h, 0):.1f}"/>')
        parts.append(f'<line class="thr" x1="{ax.left}" x2="{ax.left + plot_w}" y1="{ty:.1f}" y2="{ty:.1f}"/>')
        side = "below" if match_below else "at or above"
        parts.append(
            f'<text x="{ax.left + plot_w - 4}" y="{ty - 4:.1f}" class="tl" text-anchor="end">'
            f"threshold {threshold:g} (match {side})</text>"
        )
    for tick in _ticks(y0, y1):
        parts.append(f'<text x="{ax.left - 4}" y="{sy(tick) + 4:.1f}" class="ax" text-anchor="end">{tick:g}</text>')
    for tick in _ticks(x0, x1, integer=True):
        parts.append(f'<text x="{sx(tick):.1f}" y="{ax.height - 14}" class="ax" text-anchor="middle">{tick:g}</text>')
    parts.append(f'<text x="{ax.left + plot_w / 2:.0f}" y="{ax.height - 2}" class="ax" text-anchor="middle">frame</text>')
    parts.append(
        f'<text x="10" y="{ax.top + plot_h / 2:.0f}" class="ax" text-anchor="middle" '
        f'transform="rotate(-90 10 {ax.top + plot_h / 2:.0f})">{_e(y_label)}</text>'
    )
    for i, (name, pts) in enumerate(clean.items()):
        colour = _SERIES_COLOURS[i % len(_SERIES_COLOURS)]
        if len(pts) > 1:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
            parts.append(f'<polyline class="series" data-name="{_e(name)}" points="{path}" stroke="{colour}"/>')
        for x, y in pts:
            matched = threshold is not None and (y < threshold if match_below else y >= threshold)
            cls = "pt match" if matched else "pt"
            fill = "#d62728" if matched else colour
            parts.append(f'<circle class="{cls}" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="{3 if matched else 2}" fill="{fill}"/>')
        if len(clean) > 1:
            parts.append(f'<text x="{ax.left + 6 + 90 * i}" y="{ax.top + 12}" class="ax" fill="{colour}">{_e(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def _ticks(low: float, high: float, integer: bool = False, count: int = 5) -> list[float]:
    span = high - low
    if span <= 0:
        return [low]
    raw = span / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integer:
        step = max(1.0, round(step))
    start = math.ceil(low / step) * step
    ticks = []
    value = start
    while value <= high + 1e-9:
        ticks.append(round(value, 10))
        value += step
    return ticks


# --------------------------------------------------------------------------------------------------
# the page
# --------------------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f4f5f7;color:#1d2430}
header{background:#1d3557;color:#fff;padding:18px 28px}header h1{margin:0;font-size:22px}
main{padding:18px 28px;max-width:1500px}
section{background:#fff;border:1px solid #d8dce3;border-radius:6px;padding:14px 18px;margin:0 0 18px}
h2{font-size:18px;margin:0 0 10px}h3{font-size:15px;margin:14px 0 6px}
table{border-collapse:collapse}td,th{border:1px solid #d8dce3;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#eef1f5}.kv th{width:190px}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-weight:600;color:#fff}
.ok{background:#2a9d47}.bad{background:#c62828}.other{background:#c77800}
.reasons{background:#fdecea;border-left:4px solid #c62828;padding:6px 12px 6px 28px;margin:8px 0}
.sheet{max-width:100%;height:auto;border:1px solid #d8dce3}
.charts{display:flex;flex-wrap:wrap;gap:10px}
.chart{background:#fff}.chart .ct{font-size:13px;font-weight:600}.chart .ax,.chart .tl{font-size:11px;fill:#444}
.chart .series{fill:none;stroke-width:1.5}.chart .thr{stroke:#c62828;stroke-width:1.5;stroke-dasharray:6 4}
.chart .zone{fill:#c62828;fill-opacity:.08}.chart .tl{fill:#c62828}
.muted{color:#6b7280}code{font-size:12px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _png_data_uri(image: np.ndarray) -> str:
    import cv2

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"contact sheets must be RGB uint8 arrays, got {image.dtype} {image.shape}")
    if image.shape[1] > MAX_IMAGE_WIDTH:
        scale = MAX_IMAGE_WIDTH / image.shape[1]
        image = cv2.resize(image, (MAX_IMAGE_WIDTH, max(1, round(image.shape[0] * scale))), interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:  # pragma: no cover - cv2 encodes any uint8 RGB image
        raise ValueError("PNG encoding failed")
    return "data:image/png;base64," + base64.b64encode(buffer.tobytes()).decode("ascii")


def _flatten(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"sface": {"worst": 0.2}}`` -> ``{"sface.worst": 0.2}``, for one flat table."""
    flat: dict[str, Any] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def _status_badge(status: str) -> str:
    return f'<span class="badge {_STATUS_CLASS.get(status, "other")}">{_e(status)}</span>'


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if value is None:
        return "—"
    return str(value)


def _summary_section(summary: Mapping[str, Any], items: Sequence[ItemVisuals]) -> str:
    counts = {
        "items_total": len(items),
        "released": sum(i.status == "released" for i in items),
        "quarantined": sum(i.status == "quarantined" for i in items),
    }
    # counts come from the items themselves so the table cannot contradict the per-item sections
    values = {**{k: v for k, v in summary.items() if not isinstance(v, (list, dict))}, **counts}
    ordered = [k for k in _SUMMARY_LABELS if k in values] + sorted(k for k in values if k not in _SUMMARY_LABELS)
    rows = "".join(f"<tr><th>{_e(_SUMMARY_LABELS.get(k, k))}</th><td>{_e(_fmt(values[k]))}</td></tr>" for k in ordered)
    listing = "".join(
        f'<tr><td><a href="#item-{n}">{_e(item.input)}</a></td><td>{_status_badge(item.status)}</td>'
        f"<td>{len(item.reasons)}</td></tr>"
        for n, item in enumerate(items, 1)
    )
    return (
        '<section id="summary"><h2>Release summary</h2>'
        f'<table class="kv">{rows}</table>'
        "<h3>Items</h3><table><tr><th>input</th><th>status</th><th>reasons</th></tr>"
        f"{listing}</table></section>"
    )


def _kv_table(values: Mapping[str, Any]) -> str:
    """Nested figures as a two-column table, one row per flattened key."""
    rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(_fmt(v))}</td></tr>" for k, v in _flatten(values).items())
    return f'<table class="kv">{rows}</table>'


def _clinical_section(summary: Mapping[str, Any]) -> str:
    """What happened to the clinical table: rows and cells withheld (by line, column and kind, never
    the value) and formula cells neutralized."""
    clinical = summary.get("clinical")
    if not clinical:
        return ""
    counts = {
        "rows released": clinical.get("rows"),
        "rows withheld: no video of the patient in the input": clinical.get("rows_withheld_no_video"),
        "rows withheld: the patient's videos were not released": clinical.get("rows_withheld_video_not_released"),
        "formula cells neutralized (prefixed with ')": clinical.get("formula_cells_neutralized"),
        "columns released": ", ".join(clinical.get("columns", [])),
    }
    cells = "".join(
        f"<tr><td>{_e(c['line'])}</td><td>{_e(c['column'])}</td><td>{_e(', '.join(c['found']))}</td></tr>"
        for c in clinical.get("cells_withheld", [])
    )
    withheld = (
        "<h3>Cells withheld</h3><p class=\"muted\">kept cells that held identifying data; values are never shown</p>"
        f"<table><tr><th>line</th><th>column</th><th>found</th></tr>{cells}</table>"
        if cells
        else ""
    )
    return f'<section id="clinical"><h2>Clinical table</h2>{_kv_table(counts)}{withheld}</section>'


def _identity_section(summary: Mapping[str, Any]) -> str:
    """Release-level identity checks: the gallery attack and surrogate consistency, when run."""
    parts = []
    gallery = summary.get("gallery")
    if gallery:
        parts.append(
            "<h3>Gallery attack</h3>"
            '<p class="muted">each released face searched among all of the release\'s original faces and '
            "distractors; re-identified items are withdrawn</p>" + _kv_table(gallery)
        )
    surrogates = summary.get("surrogates")
    if surrogates:
        rows = []
        for name, fig in surrogates.get("recognizers", {}).items():
            pairs = ", ".join(f"{p['a']} ~ {p['b']}" for p in fig["lookalikes"]) or "none"
            rows.append(
                f"<tr><td>{_e(name)}</td><td>{fig['patients']}</td>"
                f"<td>{fig['same_patient_matched']} of {fig['same_patient_pairs']}</td>"
                f"<td>{fig['lookalike_pairs']} of {fig['different_patient_pairs']}</td><td>{_e(pairs)}</td></tr>"
            )
        pool = surrogates.get("pool")
        pool_line = (
            f'<p class="muted">surrogates: one generated face per patient. Licence: {_e(pool["licence"])}</p>'
            if pool and pool.get("licence")
            else f'<p class="muted">donor pool: {_e(pool["source"])}, {pool["donors"]} donors, {pool["k"]} per surrogate; '
            f"two patients share a donor with probability {pool['shared_donor_probability']:.2f} "
            "(a larger pool makes surrogates more different)</p>"
            if pool
            else ""
        )
        parts.append(
            "<h3>Surrogates</h3>"
            '<p class="muted">one surrogate per patient: items of the same patient should be matched to each '
            "other; different patients should not be (a matched pair is a look-alike)</p>"
            "<table><tr><th>recognizer</th><th>patients</th><th>same patient, items matched</th>"
            f"<th>different patients matched</th><th>look-alike pairs</th></tr>{''.join(rows)}</table>{pool_line}"
        )
    if not parts:
        return ""
    return '<section id="identity"><h2>Identity checks across the release</h2>' + "".join(parts) + "</section>"


def _item_section(n: int, item: ItemVisuals) -> str:
    parts = [
        f'<section id="item-{n}" class="item" data-status="{_e(item.status)}">',
        f"<h2>{n}. {_e(item.input)} {_status_badge(item.status)}</h2>",
    ]
    if item.output:
        parts.append(f'<p class="muted">released as <code>{_e(item.output)}</code></p>')
    if item.reasons:
        parts.append('<ul class="reasons">' + "".join(f"<li>{_e(r)}</li>" for r in item.reasons) + "</ul>")
    if item.figures:
        parts.append("<h3>Verification figures</h3>" + _kv_table(item.figures))
    if item.endpoints:
        rows = "".join(
            f"<tr><td>{_e(name)}</td><td>{_e(_fmt(e.get('original')))}</td><td>{_e(_fmt(e.get('released')))}</td>"
            f"<td>{_e(_fmt(e.get('difference')))}</td><td>{_e(e.get('tolerance'))}</td><td>{_e(e.get('unit'))}</td>"
            f"<td>{_e(e.get('status'))}{_e(': ' + e['reason'] if e.get('reason') else '')}</td></tr>"
            for name, e in item.endpoints.items()
        )
        parts.append(
            "<h3>Clinical endpoints (original vs released)</h3><table><tr><th>endpoint</th><th>original</th>"
            f"<th>released</th><th>difference</th><th>tolerance</th><th>unit</th><th>outcome</th></tr>{rows}</table>"
        )
    if item.contact_sheet is not None:
        parts.append(
            "<h3>Contact sheet</h3>"
            '<p class="muted">left: original, keypoints in green; right: anonymized, keypoints in magenta</p>'
            f'<img class="sheet" alt="contact sheet of {_e(item.input)}" src="{_png_data_uri(item.contact_sheet)}">'
        )
    charts = []
    for name, series in item.similarity_series.items():
        threshold = item.thresholds.get(name)
        is_distance = name in item.distance_recognizers
        charts.append(
            line_chart_svg(
                {name: series},
                title=f"{name}: original vs anonymized face, per frame",
                y_label="distance" if is_distance else "similarity",
                threshold=threshold,
                match_below=is_distance,
            )
        )
    if item.oks_series:
        charts.append(
            line_chart_svg(
                {"OKS": item.oks_series}, title="Keypoint similarity (OKS), per frame", y_label="OKS", y_range=(0.0, 1.0)
            )
        )
    if charts:
        parts.append('<h3>Per-frame checks</h3><div class="charts">' + "".join(charts) + "</div>")
    if item.header_changes:
        parts.append(_header_changes_table(tuple(map(tuple, item.header_changes))))
    parts.append("</section>")
    return "".join(parts)


@functools.lru_cache(maxsize=256)  # the items of one series share their whole list of changes
def _header_changes_table(changes: tuple[tuple[str, str, str], ...]) -> str:
    """An item's header-change table, folded under its count."""
    rows = "".join(_header_change_row(str(tag), str(name), str(action)) for tag, name, action in changes)
    return (
        f"<details><summary>Header changes ({len(changes)} attributes; values are never shown)"
        "</summary><table><tr><th>tag</th><th>attribute</th><th>action</th><th>meaning</th></tr>"
        f"{rows}</table></details>"
    )


@functools.lru_cache(maxsize=4096)
def _header_change_row(tag: str, name: str, action: str) -> str:
    """One row of an item's header-change table (the same rows recur in every item of a batch)."""
    return (
        f"<tr><td><code>{_e(tag)}</code></td><td>{_e(name)}</td><td>{_e(action)}</td>"
        f"<td>{_e(ACTION_WORDS.get(action, ''))}</td></tr>"
    )


def render_report(summary: Mapping[str, Any], items: Sequence[ItemVisuals]) -> str:
    """The report's HTML as a string (see :func:`write_report`)."""
    title = f"clinrelease QA report: {summary.get('profile', 'release')}"
    body = (
        _summary_section(summary, items) + _clinical_section(summary) + _identity_section(summary)
        + "".join(_item_section(n, item) for n, item in enumerate(items, 1))
    )  # fmt: skip
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        # nothing may be fetched: the report must show the same offline and leak nothing when opened
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        f"<meta name=\"viewport\" content=\"width=device-width\"><title>{_e(title)}</title>"
        f"<style>{_CSS}</style></head><body>"
        f"<header><h1>{_e(title)}</h1></header><main>{body}</main></body></html>\n"
    )


def write_report(report_dir: Path, summary: Mapping[str, Any], items: Sequence[ItemVisuals]) -> Path:
    """Write the QA report as ``report_dir/index.html`` (atomically) and return its path.

    Parameters
    ----------
    report_dir:
        Folder to write into; created when missing.
    summary:
        Release-level facts shown in the summary table (profile, profile_digest, key_id,
        ps315_edition, started, finished, ...). Scalar values are shown; lists and mappings skipped.
        Released/quarantined counts are computed from ``items``.
    items:
        One :class:`ItemVisuals` per item, in the order to show them.

    Returns
    -------
    pathlib.Path
        The written ``index.html``.
    """
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    target = report_dir / "index.html"
    text = render_report(summary, items)
    write_atomic(target, text)
    return target
