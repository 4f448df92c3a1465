"""Clinical endpoints: what the exam measures, on the original and on the released video.

Keypoint AP says the skeleton survived; a researcher analyses tap rate, cadence or blink rate. Each
endpoint below is measured on the original and on the released video from the same landmarks the
verification already uses (mediapipe pose, mediapipe Hands as in the analysis pass's
:class:`clinrelease.face.occlusion.HandFinder`, and the eye-aspect-ratio and mouth-opening series
of :mod:`clinrelease.verify.realism`), and the released value must stay within the profile's
tolerance of the original's (:func:`compare`).

Rule for what cannot be measured: an endpoint the ORIGINAL does not allow to measure (no hand in
view, too few taps or steps, too short a clip) is recorded as "not measurable" with the reason and
not judged: the release cannot lose a signal the recording does not carry. An endpoint measurable on
the original but not on the released video is "lost" and fails the item (the release dropped the
signal), as does one outside its tolerance.

Endpoints (the definitions are this module's; the literature is where each measure comes from):

* finger tapping (MDS-UPDRS 3.4; Goetz et al., Mov Disord 2008): the aperture is the thumb-tip to
  index-tip distance over the hand size (wrist to middle-finger knuckle, the series' median), as in video finger-tapping
  studies (Williams et al., Parkinsonism Relat Disord 2020; Guo et al., Front Neurol 2022). Taps are
  the aperture's peaks. ``tap_rate_hz`` taps per second; ``tap_amplitude`` the median peak over the
  trough before it (hand sizes); ``tap_decrement`` 1 - (mean amplitude of the last third of taps /
  of the first third), the sequence effect of bradykinesia; ``tap_hesitations`` inter-tap intervals
  longer than twice the median interval (3.4's hesitations and halts).
* tremor (Deuschl et al., Mov Disord 1998 consensus; Elble and McNames, Curr Neurol Neurosci Rep
  2016): the wrist's displacement along its main axis, in hand sizes, detrended;
  ``tremor_frequency_hz`` the periodogram's peak in 3-12 Hz (below the sampling's Nyquist rate);
  ``tremor_amplitude`` the peak-to-peak of the equivalent sinusoid (2 sqrt 2 RMS in that band). The
  frequency is "not measurable" where no rhythm dominates the band (:data:`DOMINANT_SHARE`).
* gait (Stenum et al., PLoS Comput Biol 2021, 2-D pose gait analysis): the ankles' separation over
  the body height (nose to ankle) peaks at every step. ``cadence_steps_per_min``; ``step_time_s``
  the median interval; ``step_time_cv`` its coefficient of variation; ``stride_length_bh`` twice the
  median peak separation, in body heights; not measurable without a stepping rhythm
  (:data:`STEP_INTERVAL`: walking towards the camera hides the ankles' separation). Arm swing (Lewek et al., Gait Posture 2010): each wrist's
  horizontal range relative to the shoulders' midpoint (5th-95th percentile, body heights);
  ``arm_swing_amplitude`` the mean of both arms, ``arm_swing_asymmetry`` the asymmetry angle
  ``|45 deg - atan(left/right)| / 90 deg * 100`` (0 symmetric, 50 one arm still). Turning
  (Salarian et al., IEEE Trans Neural Syst Rehabil Eng 2010, the iTUG's turn duration; Hulbert et
  al., Disabil Rehabil 2015, turning deficits in PD): the facing angle from the shoulders' apparent
  width (``arccos`` of the signed left-minus-right shoulder distance over its full width: 0 deg
  facing the camera, 180 deg facing away); ``turn_duration_s`` the median time a turn takes from
  20 to 160 deg, scaled to 180 deg (:func:`turn_duration`); not measurable without a turn.
* face (Soukupova and Cech, CVWW 2016 eye-aspect ratio; Karson, Neurology 1983 blink rate in PD;
  Bologna et al., Brain 2013 hypomimia): ``blink_rate_per_min`` closures, EAR under 60% of the
  series' median until it is over 80% again, a minute (from 10 s of face up); ``ear_amplitude`` the EAR's 5th-95th percentile range;
  ``mouth_opening_range`` the same for the mouth opening (the inner lips' gap in outer-eye-corner
  distances: over the mouth's width, which narrows as the mouth opens, the release's re-encoding
  alone moved bird.mkv's range by 0.16, in eye distances by 0.03). Face movement (Bologna et al., J Neurol
  Neurosurg Psychiatry 2013, facial bradykinesia: smaller amplitude of voluntary facial movements;
  MDS-UPDRS 3.2): ``face_movement_amplitude`` the mean of the 5th-95th percentile ranges of the brow
  height over the upper lids and of the mouth width (smiling), both in outer-eye-corner distances
  (:func:`clinrelease.verify.realism.brow_height`, :func:`~clinrelease.verify.realism.mouth_width`);
  ``brow_movement_amplitude`` the brow half alone (its range moves by 0.004 eye distances under the
  release's re-encoding on the shared clips, the mouth width's by up to 0.044).

The hand and gait endpoints are measured a second time on the original, on the frames between the
sampled ones (:func:`repeat_frame`), and a group the original does not repeat within half its
tolerances is not measurable (:func:`repeatable`): peaks of landmark jitter are no taps, and the
pose of a person walking towards the camera gives "cadences" of 40-67 steps/min that the frames
between do not repeat (one-by-one-person-detection.mp4, frames 240-360: 67 and 58; 280-400: 48
and 60). The hands of the released
video are measured in the original's frame with the released pixels in and around the original's
hands (:func:`hand_probe`): mediapipe Hands reads context beyond the hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from clinrelease.errors import ConfigError
from clinrelease.face.base import iter_pairs


@dataclass(frozen=True)
class EndpointInfo:
    """What an endpoint is: its group (which landmarks it needs) and unit."""

    group: str
    unit: str
    label: str


#: every endpoint by name; a profile's ``verify.endpoints.tolerances`` picks those it judges
ENDPOINTS: dict[str, EndpointInfo] = {
    "tap_rate_hz": EndpointInfo("tapping", "Hz", "tap rate"),
    "tap_amplitude": EndpointInfo("tapping", "hand sizes", "tap amplitude"),
    "tap_decrement": EndpointInfo("tapping", "fraction", "tap amplitude decrement"),
    "tap_hesitations": EndpointInfo("tapping", "count", "tap hesitations"),
    "tremor_frequency_hz": EndpointInfo("tremor", "Hz", "tremor dominant frequency"),
    "tremor_amplitude": EndpointInfo("tremor", "hand sizes", "tremor amplitude"),
    "cadence_steps_per_min": EndpointInfo("gait", "steps/min", "cadence"),
    "step_time_s": EndpointInfo("gait", "s", "step time"),
    "step_time_cv": EndpointInfo("gait", "fraction", "step time CV"),
    "stride_length_bh": EndpointInfo("gait", "body heights", "stride length"),
    "arm_swing_amplitude": EndpointInfo("gait", "body heights", "arm-swing amplitude"),
    "arm_swing_asymmetry": EndpointInfo("gait", "%", "arm-swing asymmetry"),
    "turn_duration_s": EndpointInfo("gait", "s", "turn duration"),
    "blink_rate_per_min": EndpointInfo("face", "blinks/min", "blink rate"),
    "ear_amplitude": EndpointInfo("face", "EAR", "eye-aspect-ratio amplitude"),
    "mouth_opening_range": EndpointInfo("face", "eye distances", "mouth-opening range"),
    "face_movement_amplitude": EndpointInfo("face", "eye distances", "face movement amplitude"),
    "brow_movement_amplitude": EndpointInfo("face", "eye distances", "brow movement amplitude"),
}

#: a series is measurable when the landmark was found in at least this fraction of sampled frames
MIN_COVERAGE = 0.5
#: and spans at least this long (three cycles of the slowest tremor, a few steps, a blink or two)
MIN_SECONDS = 1.0
#: peaks (taps, steps) must rise this fraction of the series' 5th-95th percentile range above their
#: neighbourhood: below it they are landmark jitter
PEAK_PROMINENCE = 0.3
#: EAR under this fraction of the series' median is a closed eye (a blink halves it, looking down
#: narrows it by a third)
BLINK_FRACTION = 0.6
#: and opens again once over this fraction (a closure hovering at the threshold is one blink)
BLINK_REOPEN = 0.8
#: a blink rate needs this long a series: people blink every 3-6 s at rest (Karson 1983), and a
#: rate over a few seconds counts one slow closure as dozens a minute
BLINK_SECONDS = 10.0
TREMOR_BAND = (3.0, 12.0)
#: step intervals a walk has (cadence 30-240 steps/min); peaks further apart are a person shifting
#: stance or walking towards the camera, where the ankles' separation does not show the steps
STEP_INTERVAL = (0.25, 2.0)
#: a turn is the body's facing angle (from the shoulders' apparent width) crossing from under the
#: first to over the second angle (degrees; 0 faces the camera, 180 faces away) or back
TURN_EDGES = (20.0, 160.0)
#: a tremor frequency is only read where the band has one: its peak (with the bins beside it) must
#: hold this share of the band's power; voluntary movement (signing, reaching) spreads over the band
DOMINANT_SHARE = 0.4

#: how far around the original's hand (a fraction of its size) the released pixels are measured
#: (:func:`hand_probe`): the fingers' width, the swap's feather at the hand's outline (which keeps
#: :data:`clinrelease.face.occlusion.HAND_MARGIN`) and a hand moved by a dropped frame
PROBE_MARGIN = 0.25

# mediapipe Hands points
_WRIST, _THUMB_TIP, _INDEX_TIP, _MIDDLE_MCP = 0, 4, 8, 9
# mediapipe pose points
_NOSE, _L_SHOULDER, _R_SHOULDER, _L_WRIST, _R_WRIST, _L_ANKLE, _R_ANKLE = 0, 11, 12, 15, 16, 27, 28


@dataclass(frozen=True)
class Measured:
    """An endpoint's value, or None with the reason it could not be measured."""

    value: float | None
    reason: str | None = None


def _none(names: Iterable[str], reason: str) -> dict[str, Measured]:
    return {n: Measured(None, reason) for n in names}


def _group(group: str) -> list[str]:
    return [n for n, e in ENDPOINTS.items() if e.group == group]


def _span_reason(times: np.ndarray, expected: int, what: str) -> str | None:
    """Why a series of ``len(times)`` valid samples out of ``expected`` is too thin to measure."""
    if expected == 0 or len(times) < max(3, MIN_COVERAGE * expected):
        return f"{what} found in {len(times)} of {expected} sampled frames (needs {MIN_COVERAGE:.0%})"
    if times[-1] - times[0] < MIN_SECONDS:
        return f"{what} seen for {times[-1] - times[0]:.2f} s (needs {MIN_SECONDS} s)"
    return None


def _range(values: np.ndarray) -> float:
    """A series' 5th-95th percentile range."""
    v = np.asarray(values, np.float64)
    return float(np.percentile(v, 95) - np.percentile(v, 5))


def _peaks(values: np.ndarray) -> np.ndarray:
    """Indices of the series' peaks that rise :data:`PEAK_PROMINENCE` of its range."""
    from scipy.signal import find_peaks

    spread = _range(values)
    if spread <= 1e-9:
        return np.array([], int)
    peaks, _ = find_peaks(values, prominence=PEAK_PROMINENCE * spread)
    return peaks


def tap_aperture(hand: np.ndarray, size: float | None = None) -> float:
    """Thumb-tip to index-tip distance of a 21-point hand, in hand sizes (wrist to middle knuckle;
    ``size`` gives the series' median, which a hand turning edge-on or a misplaced wrist point does
    not collapse)."""
    h = np.asarray(hand, np.float64)
    size = max(float(np.linalg.norm(h[_MIDDLE_MCP] - h[_WRIST])) if size is None else size, 1e-6)
    return float(np.linalg.norm(h[_THUMB_TIP] - h[_INDEX_TIP]) / size)


def tapping_endpoints(times: np.ndarray, aperture: np.ndarray, expected: int | None = None) -> dict[str, Measured]:
    """Tap rate, amplitude, decrement and hesitations from an aperture series (see the module)."""
    t, a = np.asarray(times, np.float64), np.asarray(aperture, np.float64)
    why = _span_reason(t, len(t) if expected is None else expected, "the hand")
    if why:
        return _none(_group("tapping"), why)
    peaks = _peaks(a)
    if len(peaks) < 3:
        return _none(_group("tapping"), f"{len(peaks)} tap(s) found (needs 3)")
    intervals = np.diff(t[peaks])
    amplitudes = []
    for prev, peak in zip(np.r_[0, peaks[:-1]], peaks):
        amplitudes.append(a[peak] - a[prev : peak + 1].min())
    amps = np.asarray(amplitudes)
    third = max(1, len(amps) // 3)
    first = float(amps[:third].mean())
    return {
        "tap_rate_hz": Measured(float(1.0 / intervals.mean())),
        "tap_amplitude": Measured(float(np.median(amps))),
        "tap_decrement": Measured(float(1.0 - amps[-third:].mean() / first) if first > 1e-9 else 0.0),
        "tap_hesitations": Measured(float(np.sum(intervals > 2 * np.median(intervals)))),
    }


def _uniform(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, float]:
    """The series resampled on a uniform grid at its median sampling interval."""
    dt = float(np.median(np.diff(times)))
    grid = np.arange(times[0], times[-1] + dt / 2, dt)
    return np.interp(grid, times, values), 1.0 / dt


def tremor_endpoints(times: np.ndarray, position: np.ndarray, hand_size: float, expected: int | None = None) -> dict[str, Measured]:
    """Dominant frequency and amplitude of a wrist's displacement (``(n, 2)`` pixels; see the module)."""
    from scipy.signal import detrend, periodogram

    t, p = np.asarray(times, np.float64), np.asarray(position, np.float64)
    why = _span_reason(t, len(t) if expected is None else expected, "the hand")
    if why:
        return _none(_group("tremor"), why)
    centred = p - p.mean(axis=0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]  # the main direction of movement
    signal, fs = _uniform(t, centred @ axis / max(hand_size, 1e-6))
    high = min(TREMOR_BAND[1], 0.45 * fs)
    if high <= TREMOR_BAND[0]:
        return _none(_group("tremor"), f"sampled at {fs:.1f} Hz, too slow to see {TREMOR_BAND[0]:g} Hz and up")
    freqs, power = periodogram(detrend(signal), fs=fs, scaling="spectrum")
    band = (freqs >= TREMOR_BAND[0]) & (freqs <= high)
    if not band.any():
        return _none(_group("tremor"), "the clip is too short to resolve the tremor band")
    peak = int(np.argmax(np.where(band, power, -1.0)))
    # 'spectrum' scaling gives each bin the squared RMS of its sinusoid
    total = float(power[band].sum())
    out = {"tremor_amplitude": Measured(2 * np.sqrt(2) * float(np.sqrt(total)))}
    share = float(power[max(peak - 1, 0) : peak + 2].sum()) / total if total > 0 else 0.0
    if share < DOMINANT_SHARE:
        out["tremor_frequency_hz"] = Measured(None, f"no dominant rhythm in {TREMOR_BAND[0]:g}-{high:g} Hz (peak holds {share:.0%} of the band, needs {DOMINANT_SHARE:.0%})")
    else:
        out["tremor_frequency_hz"] = Measured(float(freqs[peak]))
    return out


def turn_duration(times: np.ndarray, width: np.ndarray) -> Measured:
    """Median duration of the turns in a series of the shoulders' signed apparent width
    (``x_left - x_right`` over the body height: positive facing the camera, negative facing away).

    The facing angle is ``arccos(width / full width)`` (the full width is the series' 95th
    percentile of ``|width|``); a turn crosses from :data:`TURN_EDGES`' first angle to its second
    (or back), and its duration is the time between the two crossings (interpolated between
    samples) scaled to the whole 180 degrees at the same turning speed.
    """
    t, w = np.asarray(times, np.float64), np.asarray(width, np.float64)
    full = float(np.percentile(np.abs(w), 95)) if len(w) else 0.0
    if len(t) < 3 or full <= 1e-6:
        return Measured(None, f"the shoulders seen side by side in {len(t)} sampled frames")
    angle = np.degrees(np.arccos(np.clip(w / full, -1.0, 1.0)))
    low, high = TURN_EDGES

    def crossing(a: int, b: int, level: float) -> float:
        span = angle[b] - angle[a]
        share = (level - angle[a]) / span if abs(span) > 1e-9 else 0.0
        return float(t[a] + min(max(share, 0.0), 1.0) * (t[b] - t[a]))

    durations, side, last = [], None, 0
    for i, a in enumerate(angle):
        here = low if a <= low else high if a >= high else None
        if here is None:
            continue
        if side is not None and here != side:
            durations.append((crossing(i - 1, i, here) - crossing(last, last + 1, side)) * 180.0 / (high - low))
        side, last = here, i
    if not durations:
        return Measured(None, "no turn: the shoulders never swap sides (facing the camera, then away, or back)")
    return Measured(float(np.median(durations)))


def gait_endpoints(times: np.ndarray, points: np.ndarray, visible: np.ndarray, expected: int | None = None) -> dict[str, Measured]:
    """Cadence, step time and CV, stride length and arm swing from pose points (``(n, 33, 2)``)."""
    t = np.asarray(times, np.float64)
    pts = np.asarray(points, np.float64)
    vis = np.asarray(visible, bool)
    legs = vis[:, _L_ANKLE] & vis[:, _R_ANKLE] & vis[:, _NOSE] if len(vis) else np.zeros(0, bool)
    why = _span_reason(t[legs], len(t) if expected is None else expected, "both ankles and the head")
    if why:
        return _none(_group("gait"), why)
    t, pts, vis = t[legs], pts[legs], vis[legs]
    ankles_y = np.maximum(pts[:, _L_ANKLE, 1], pts[:, _R_ANKLE, 1])
    height = float(np.median(ankles_y - pts[:, _NOSE, 1]))
    if height <= 1.0:
        return _none(_group("gait"), "the ankles are not below the head (no upright body)")
    separation = np.linalg.norm(pts[:, _L_ANKLE] - pts[:, _R_ANKLE], axis=1) / height
    steps = _peaks(separation)
    out: dict[str, Measured] = {}
    if len(steps) < 3:
        out.update(_none(("cadence_steps_per_min", "step_time_s", "step_time_cv", "stride_length_bh"), f"{len(steps)} step(s) found (needs 3)"))
    elif not STEP_INTERVAL[0] <= float(np.median(np.diff(t[steps]))) <= STEP_INTERVAL[1]:
        median = float(np.median(np.diff(t[steps])))
        out.update(
            _none(
                ("cadence_steps_per_min", "step_time_s", "step_time_cv", "stride_length_bh"),
                f"no stepping rhythm: the ankles part every {median:.2f} s (a step takes {STEP_INTERVAL[0]}-{STEP_INTERVAL[1]} s; "
                "side-on walking shows it)",
            )
        )
    else:
        intervals = np.diff(t[steps])
        out["cadence_steps_per_min"] = Measured(float(60.0 / intervals.mean()))
        out["step_time_s"] = Measured(float(np.median(intervals)))
        out["step_time_cv"] = (
            Measured(float(intervals.std() / intervals.mean())) if len(intervals) >= 3 else Measured(None, f"{len(intervals)} step interval(s) (needs 3)")
        )
        out["stride_length_bh"] = Measured(float(2 * np.median(separation[steps])))
    arms = vis[:, _L_WRIST] & vis[:, _R_WRIST] & vis[:, _L_SHOULDER] & vis[:, _R_SHOULDER]
    shoulders = vis[:, _L_SHOULDER] & vis[:, _R_SHOULDER]
    out["turn_duration_s"] = turn_duration(t[shoulders], (pts[shoulders, _L_SHOULDER, 0] - pts[shoulders, _R_SHOULDER, 0]) / height)
    if arms.sum() < max(3, MIN_COVERAGE * len(t)):
        out.update(_none(("arm_swing_amplitude", "arm_swing_asymmetry"), f"both wrists and shoulders found in {int(arms.sum())} of {len(t)} frames with legs"))
        return out
    trunk = (pts[arms, _L_SHOULDER, 0] + pts[arms, _R_SHOULDER, 0]) / 2
    swing = []
    for wrist in (_L_WRIST, _R_WRIST):
        x = (pts[arms, wrist, 0] - trunk) / height
        swing.append(_range(x))
    left, right = swing
    out["arm_swing_amplitude"] = Measured(float((left + right) / 2))
    asymmetry = abs(45.0 - np.degrees(np.arctan2(left, right))) / 90.0 * 100.0
    out["arm_swing_asymmetry"] = Measured(float(asymmetry))
    return out


def face_endpoints(
    times: np.ndarray, ear: np.ndarray, mouth: np.ndarray, expected: int | None = None, brow: np.ndarray | None = None, smile: np.ndarray | None = None
) -> dict[str, Measured]:
    """Blink rate, EAR amplitude, mouth-opening range and (given the brow-height and mouth-width
    series) the face movement amplitude from the realism series (see the module)."""
    t, e, m = (np.asarray(v, np.float64) for v in (times, ear, mouth))
    why = _span_reason(t, len(t) if expected is None else expected, "the face mesh")
    if why:
        return _none(_group("face"), why)
    baseline, blinks, closed = float(np.median(e)), 0, False
    for value in e:
        if not closed and value < BLINK_FRACTION * baseline:
            closed, blinks = True, blinks + 1
        elif closed and value > BLINK_REOPEN * baseline:
            closed = False
    duration = float(t[-1] - t[0] + np.median(np.diff(t)))
    rate = (
        Measured(blinks / duration * 60.0)
        if duration >= BLINK_SECONDS
        else Measured(None, f"the face mesh seen for {duration:.1f} s (a blink rate needs {BLINK_SECONDS:g} s)")
    )
    return {
        "blink_rate_per_min": rate,
        "ear_amplitude": Measured(_range(e)),
        "mouth_opening_range": Measured(_range(m)),
        "face_movement_amplitude": (
            Measured(float(np.mean([_range(brow), _range(smile)]))) if brow is not None and smile is not None else Measured(None, "no brow and mouth-width series")
        ),
        "brow_movement_amplitude": Measured(_range(brow)) if brow is not None else Measured(None, "no brow series"),
    }


# --------------------------------------------------------------------------------------------------
# landmarks of one video
# --------------------------------------------------------------------------------------------------


@dataclass
class Landmarks:
    """The landmark series of one video on its sampled frames (None where nothing was found)."""

    fps: float
    frames: list[int] = field(default_factory=list)
    pose: list[Any] = field(default_factory=list)  # clinrelease.verify.keypoints.Pose | None
    hands: list[dict[str, np.ndarray]] = field(default_factory=list)  # handedness -> (21, 2)
    #: (frame, EAR, mouth opening, brow height, mouth width) from the face-realism series (mouth
    #: opening, brow height and width in outer-eye-corner distances: :func:`face_row`)
    face: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    #: the original's hands again, on the frames between the sampled ones (:func:`repeat_frame`)
    repeat: Landmarks | None = None

    def times(self, frames: Iterable[int]) -> np.ndarray:
        return np.asarray(list(frames), np.float64) / self.fps


def groups_of(names: Iterable[str]) -> set[str]:
    """The landmark groups the named endpoints need."""
    return {ENDPOINTS[n].group for n in names}


def tapping_hand(marks: Landmarks) -> str | None:
    """The hand whose aperture moves most (the one tapping), or None without a hand."""
    apertures: dict[str, list[float]] = {}
    for hands in marks.hands:
        for label, pts in hands.items():
            apertures.setdefault(label, []).append(tap_aperture(pts))
    if not apertures:
        return None
    return max(apertures, key=lambda k: (len(apertures[k]) >= 3, float(np.ptp(apertures[k]))))


def measure(marks: Landmarks, names: Iterable[str], hand: str | None = None) -> dict[str, Measured]:
    """The named endpoints of one video; ``hand`` picks the hand (default: :func:`tapping_hand`)."""
    wanted = set(names)
    groups = groups_of(wanted)
    out: dict[str, Measured] = {}
    n = len(marks.frames)
    if not marks.fps:
        return _none(wanted, "the video has no frame rate")
    if groups & {"tapping", "tremor"}:
        hand = hand or tapping_hand(marks)
        rows = [(f, h[hand]) for f, h in zip(marks.frames, marks.hands) if hand in h]
        times = marks.times(f for f, _ in rows)
        pts = np.stack([p for _, p in rows]) if rows else np.zeros((0, 21, 2))
        if hand is None:
            out.update(_none(_group("tapping") + _group("tremor"), f"no hand found in {n} sampled frames"))
        else:
            size = float(np.median(np.linalg.norm(pts[:, _MIDDLE_MCP] - pts[:, _WRIST], axis=1))) if len(pts) else 1.0
            out.update(tapping_endpoints(times, np.array([tap_aperture(p, size) for p in pts]), n))
            out.update(tremor_endpoints(times, pts[:, _WRIST] if len(pts) else np.zeros((0, 2)), size, n))
    if "gait" in groups:
        from clinrelease.verify.keypoints import VISIBILITY_MIN

        rows = [(f, p) for f, p in zip(marks.frames, marks.pose) if p is not None]
        out.update(
            gait_endpoints(
                marks.times(f for f, _ in rows),
                np.stack([p.points for _, p in rows]) if rows else np.zeros((0, 33, 2)),
                np.stack([p.visibility >= VISIBILITY_MIN for _, p in rows]) if rows else np.zeros((0, 33), bool),
                n,
            )
        )
    if "face" in groups:
        if not marks.face:
            out.update(_none(_group("face"), "no sampled frame shows the patient's face mesh"))
        else:
            f, e, m, b, s = zip(*marks.face)
            out.update(face_endpoints(marks.times(f), np.array(e), np.array(m), max(n, len(f)), np.array(b), np.array(s)))
    return {k: v for k, v in out.items() if k in wanted}


def hand_probe(original: np.ndarray, released: np.ndarray, hands: list[np.ndarray]) -> np.ndarray:
    """The original frame with the released pixels in and around the original's ``hands`` (joint
    points), which is what the released hands are measured on.

    mediapipe Hands reads more than the hand: its landmark crop spans about twice the hand, and in
    tracking mode each frame's crop follows the last frame's points, so a change well away from the
    hand (the swapped chin and neck above a hand held at the chest) moved the points by 2-22 px on
    again.mkv although every hand pixel was the original's. Measured on this probe, a release that
    leaves the hands alone keeps their landmarks, and one that changes them (blurred, painted over,
    frames dropped) is measured as it is.
    """
    if not hands:
        return original
    from clinrelease.face.occlusion import hands_mask

    mask = hands_mask(hands, original.shape[:2], PROBE_MARGIN)
    probe = original.copy()
    probe[mask] = released[mask]
    return probe


#: the groups measured a second time on the original (:func:`repeat_frame`): those read from frames
#: (the face series comes from the realism check, whose samples the release is judged on)
REPEATED = ("tapping", "tremor", "gait")
#: the original's two measurements must agree within this share of an endpoint's tolerance: the
#: rest is what the release may change (a measurement that moves by the whole tolerance on its own
#: leaves none)
REPEAT_SHARE = 0.5


def repeat_frame(index: int, sample_every: int) -> bool:
    """Whether frame ``index`` is one the original's hands are measured on a second time: half a
    sampling step after the sampled frames (every other frame when every frame is sampled)."""
    step = max(sample_every, 2)
    return index % step == step // 2


def repeatable(original: Mapping[str, Measured], again: Mapping[str, Measured], tolerances: Mapping[str, Tolerance]) -> dict[str, Measured]:
    """The original's endpoints, each group whose second measurement (:func:`repeat_frame`) does
    not reproduce an endpoint within :data:`REPEAT_SHARE` of its tolerance made not measurable,
    with both values: a series of peaks that
    are landmark jitter (a signing hand's "taps") moves with any pixel change, the release's own
    re-encoding included (again.mkv's tap rate: 1.5 Hz on the sampled frames, 1.8 Hz between them,
    no taps found once the untouched original went through x264 at CRF 16), and a release cannot
    keep a value its original does not keep."""
    out = dict(original)
    halved = {n: Tolerance(t.kind, REPEAT_SHARE * t.value) for n, t in tolerances.items()}
    for result in compare(original, again, halved):
        if result.status not in (SHIFTED, LOST):
            continue
        second = "not measurable" if result.released is None else f"{result.released:.3g}"
        why = (
            f"not repeatable on the original: {ENDPOINTS[result.name].label} {result.original:.3g} on the sampled frames, "
            f"{second} on the frames between them (needs {result.tolerance})"
        )
        # one series gives the whole group (the taps' rate, amplitude, decrement and hesitations)
        for name in tolerances:
            if ENDPOINTS[name].group == ENDPOINTS[result.name].group and out.get(name, Measured(None)).value is not None:
                out[name] = Measured(None, why)
    return out


def face_row(frame: int, ear: float, mouth: float, brow: float, width: float) -> tuple[int, float, float, float, float]:
    """One frame of the face series from the realism check's figures, the mouth opening (the lips'
    gap over the mouth's width there) turned into outer-eye-corner distances like the brow height
    and the mouth width (``width`` is already in them)."""
    return frame, ear, mouth * width, brow, width


def collect_landmarks(
    original_frames: Iterable[np.ndarray],
    released_frames: Iterable[np.ndarray],
    fps: float,
    groups: set[str],
    sample_every: int = 2,
    realism: Any = None,
) -> tuple[Landmarks, Landmarks]:
    """Pose and hand landmarks of both videos on every ``sample_every``-th frame (the released
    hands on :func:`hand_probe`), the original's pose and hands again between them (``original.repeat``),
    and the face series of ``realism`` (a :class:`clinrelease.verify.realism.RealismReport`, whose
    per-frame EAR and mouth opening are already measured on both faces)."""
    if sample_every < 1:
        raise ConfigError(f"sample_every must be >= 1, got {sample_every}")
    original, released = Landmarks(fps), Landmarks(fps)
    need_pose, need_hands = "gait" in groups, bool(groups & {"tapping", "tremor"})
    if need_pose or need_hands:
        from clinrelease.face.occlusion import HandFinder
        from clinrelease.verify.keypoints import PoseDetector

        # a pose graph of its own (static-image mode: the points the shared one gives), so the
        # verification walk runs this check beside the keypoint check
        detect = PoseDetector() if need_pose else None
        # one tracker per series: the hand tracker carries state from frame to frame
        finders = (HandFinder(), HandFinder(), HandFinder()) if need_hands else None
        original.repeat = Landmarks(fps)
        try:
            for index, orig, anon in iter_pairs(original_frames, released_frames):
                if repeat_frame(index, sample_every):
                    original.repeat.frames.append(index)
                    original.repeat.pose.append(detect(orig) if detect else None)
                    original.repeat.hands.append(dict(finders[2].points(orig)) if finders else {})
                if index % sample_every:
                    continue
                for frame, marks in ((orig, original), (anon, released)):
                    marks.frames.append(index)
                    marks.pose.append(detect(frame) if detect else None)
                if finders:
                    found = finders[0].points(orig)
                    original.hands.append(dict(found))
                    released.hands.append(dict(finders[1].points(hand_probe(orig, anon, [p for _, p in found]))))
                else:
                    original.hands.append({})
                    released.hands.append({})
        finally:
            for finder in finders or ():
                finder.close()
            if detect is not None:
                detect.close()
    if "face" in groups and realism is not None:
        for row in realism.per_frame:
            original.face.append(face_row(row.frame, row.eye_original, row.mouth_original, row.brow_original, row.smile_original))
            if row.eye_released is not None:
                released.face.append(face_row(row.frame, row.eye_released, row.mouth_released, row.brow_released, row.smile_released))
        # the face series is sampled where the original's face was confirmed: that is its frame count
        for marks in (original, released):
            if not marks.frames:
                marks.frames = [r.frame for r in realism.per_frame]
    return original, released


# --------------------------------------------------------------------------------------------------
# original against released
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """How far the released value may be from the original's: a fraction of it, or in its unit."""

    kind: str  # "relative" or "absolute"
    value: float

    def describe(self) -> str:
        return f"±{self.value * 100:.3g}%" if self.kind == "relative" else f"±{self.value:g}"


#: the outcomes of one endpoint
KEPT, SHIFTED, LOST, NOT_MEASURABLE = "kept", "shifted", "lost", "not measurable"


@dataclass
class EndpointResult:
    """One endpoint, original against released."""

    name: str
    unit: str
    original: float | None
    released: float | None
    tolerance: str
    status: str
    #: released - original (in the endpoint's unit)
    difference: float | None = None
    #: what the tolerance judges: |difference| (absolute) or |difference| / |original| (relative)
    change: float | None = None
    limit: float | None = None
    reason: str | None = None


@dataclass
class EndpointReport:
    """Every judged endpoint of one item."""

    sample_every: int
    frames_checked: int
    hand: str | None = None
    results: list[EndpointResult] = field(default_factory=list)

    def failing(self) -> list[EndpointResult]:
        return [r for r in self.results if r.status in (SHIFTED, LOST)]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def compare(original: Mapping[str, Measured], released: Mapping[str, Measured], tolerances: Mapping[str, Tolerance]) -> list[EndpointResult]:
    """Judge each endpoint of ``tolerances`` (see the module's rule for what cannot be measured)."""
    results = []
    for name, tol in tolerances.items():
        o, r = original.get(name, Measured(None, "not measured")), released.get(name, Measured(None, "not measured"))
        res = EndpointResult(name, ENDPOINTS[name].unit, o.value, r.value, tol.describe(), KEPT, limit=tol.value)
        if o.value is None:
            res.status, res.reason = NOT_MEASURABLE, o.reason
        elif r.value is None:
            res.status, res.reason = LOST, f"measurable on the original, not on the release: {r.reason}"
        else:
            res.difference = r.value - o.value
            if tol.kind == "relative":
                # finite even from zero: the figure goes into the signed audit log's canonical JSON
                res.change = abs(res.difference) / max(abs(o.value), 1e-9)
            else:
                res.change = abs(res.difference)
            if res.change > tol.value:
                res.status = SHIFTED
        results.append(res)
    return results


def verify_endpoints(
    original_frames: Iterable[np.ndarray],
    released_frames: Iterable[np.ndarray],
    fps: float,
    tolerances: Mapping[str, Tolerance],
    sample_every: int = 2,
    realism: Any = None,
) -> EndpointReport:
    """Measure the endpoints of ``tolerances`` on both videos and judge each released value."""
    unknown = sorted(set(tolerances) - set(ENDPOINTS))
    if unknown:
        raise ConfigError(f"unknown endpoint(s) {', '.join(unknown)} (known: {', '.join(ENDPOINTS)})")
    original, released = collect_landmarks(original_frames, released_frames, fps, groups_of(tolerances), sample_every, realism)
    hand = tapping_hand(original) if groups_of(tolerances) & {"tapping", "tremor"} else None
    report = EndpointReport(sample_every, len(original.frames), hand)
    measured = measure(original, tolerances, hand)
    if original.repeat is not None:
        framed = {n: t for n, t in tolerances.items() if ENDPOINTS[n].group in REPEATED}
        measured = repeatable(measured, measure(original.repeat, framed, hand), framed)
    report.results = compare(measured, measure(released, tolerances, hand), tolerances)
    return report


def endpoint_reasons(report: EndpointReport) -> list[str]:
    """Readable quarantine reasons for the shifted and lost endpoints."""
    reasons = []
    for r in report.failing():
        label = ENDPOINTS[r.name].label
        if r.status == LOST:
            reasons.append(f"endpoint: {label} ({r.name}) {r.reason}")
        else:
            change = f"{r.change:.0%}" if r.tolerance.startswith("±") and r.tolerance.endswith("%") else f"{r.change:.3g} {r.unit}"
            reasons.append(
                f"endpoint: {label} ({r.name}) {r.original:.3g} on the original, {r.released:.3g} released: "
                f"changed by {change}, tolerance {r.tolerance}"
            )
    return reasons
