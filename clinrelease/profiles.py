"""Release profiles: YAML files naming what a release keeps, how it anonymizes and what it verifies.

A profile is looked up by name in ``<repo>/profiles/NAME.yaml`` (and in the folders of the
``CLINRELEASE_PROFILE_PATH`` environment variable, which are searched first), or given as a path to a
``.yaml`` file. ``extends: NAME`` merges the profile over its parent recursively: the child wins,
lists replace, and ``null`` deletes the inherited key. The merged document is validated against
:data:`PROFILE_SCHEMA` (JSON Schema) plus a few cross-section rules, then turned into frozen
dataclasses. Keys a profile leaves out take the defaults of the dataclasses below, which are
privacy-first: face swap on, both recognizers, OCR, leak scan and residual-face check on.

Every problem is reported at once, each naming the file, the key path and what is allowed, e.g.
``profiles/x.yaml: anonymizer.params.identity_strength: 1.5 is not between 0 and 1``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import importlib.metadata
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

import clinrelease
from clinrelease.dicom.deid_options import OPTIONS as DEID_OPTIONS  # PS3.15 option names, CID 7050 order
from clinrelease.errors import ConfigError
from clinrelease.face.params import SwapParams, param_problems
from clinrelease.face.small import PROFILE_VIEW_TREATMENTS, PROFILE_YAW, SMALL_FACE_METHODS  # swapped faces too small or turned away
from clinrelease.verify.endpoints import ENDPOINTS, Tolerance

#: environment variable with extra profile folders (``os.pathsep``-separated), searched first
PROFILE_PATH_ENV = "CLINRELEASE_PROFILE_PATH"

CLINICAL_ACTIONS = ("keep", "drop", "pseudonymize", "date_shift", "generalize_age", "free_text_drop")
PATIENT_RULES = ("largest", "most_present", "all")
#: anonymizers built into clinrelease; anything else must be a ``clinrelease.anonymizers`` entry point
BUILTIN_ANONYMIZERS = ("swap", "blur", "pixelate", "mask", "textured_blur")
#: ``blur``, ``mask`` and ``pixelate`` leave a flat or blocky patch over a face; ``textured_blur``
#: (clinrelease.face.textured_blur) does not, and ``swap`` gives each bystander a surrogate of its own
BYSTANDER_TREATMENTS = ("swap", "textured_blur", "blur", "mask", "pixelate")
#: ``native`` is uncompressed; pixels are only encoded when a pixel stage ran or a plain video becomes DICOM
OUTPUT_SYNTAXES = ("h264", "mpeg2", "hevc", "jpeg", "native")
#: syntaxes whose ``quality`` is an x264/x265-style CRF (0 = lossless .. 51 = worst)
CRF_SYNTAXES = ("h264", "hevc", "mpeg2")
ANONYMIZER_ENTRY_POINT_GROUP = "clinrelease.anonymizers"

_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_NAME = {"type": "string", "pattern": r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$"}
_TAG_OR_KEYWORD = {"type": "string", "pattern": r"^(\([0-9A-Fa-f]{4},[0-9A-Fa-f]{4}\)|[A-Za-z][A-Za-z0-9]*)$"}
_PRIVATE_TAG = {"type": "string", "pattern": r"^\([0-9A-Fa-f]{4},(xx|XX|[0-9A-Fa-f]{2})[0-9A-Fa-f]{2}\)( \S.*)?$"}


def _obj(properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "additionalProperties": False, **extra}


#: JSON Schema of one profile document (a file on its own, or the merged result of ``extends``).
#: Nothing is required: omitted keys take the dataclass defaults. ``null`` is allowed wherever a
#: child may delete what its parent set.
PROFILE_SCHEMA: dict[str, Any] = _obj(
    {
        "name": _NAME,
        "description": {"type": "string"},
        "extends": {"type": ["string", "null"], "minLength": 1},
        "deid": _obj(
            {
                "options": {"type": "array", "items": {"enum": list(DEID_OPTIONS)}, "uniqueItems": True},
                "keep": {"type": "array", "items": _TAG_OR_KEYWORD, "uniqueItems": True},
                "safe_private_extra": {"type": "array", "items": _PRIVATE_TAG, "uniqueItems": True},
            }
        ),
        "clinical": _obj(
            {
                "id_column": {"type": "string", "minLength": 1},
                "default": {"enum": list(CLINICAL_ACTIONS)},
                "columns": {
                    "type": "object",
                    "additionalProperties": {"enum": list(CLINICAL_ACTIONS) + [None]},
                },
                "age_band_years": {"type": "integer", "minimum": 1, "maximum": 50},
            }
        ),
        "faces": _obj(
            {
                "enabled": {"type": "boolean"},
                "patient_rule": {"enum": list(PATIENT_RULES)},
                "min_face_px": {"type": "integer", "minimum": 1},
                "keep_hands": {"type": "boolean"},
                "small_face": {"enum": list(SMALL_FACE_METHODS)},
                "profile_view": {"enum": list(PROFILE_VIEW_TREATMENTS)},
                "profile_yaw": {"type": "number", "exclusiveMinimum": 0, "maximum": 2},
                "required": {"type": "boolean"},
            }
        ),
        "anonymizer": {
            "oneOf": [
                {"type": "null"},
                _obj(
                    {
                        "name": _NAME,
                        # judged against the anonymizers' declarations (clinrelease.face.params) once
                        # merged: a child may switch to an anonymizer that takes other parameters
                        "params": {"type": "object"},
                        "bystander": {"enum": list(BYSTANDER_TREATMENTS)},
                    }
                ),
            ]
        },
        "verify": _obj(
            {
                "sample_every": {"type": "integer", "minimum": 1},
                "recognizers": {
                    "type": "object",
                    "propertyNames": _NAME,
                    "additionalProperties": {
                        "oneOf": [
                            {"type": "null"},
                            _obj(
                                {
                                    "threshold": {"type": "number", "minimum": -1, "maximum": 2},
                                    "max_matched_fraction": _FRACTION,
                                    "model": {"type": ["string", "null"], "minLength": 1},
                                }
                            ),
                        ]
                    },
                },
                "gallery": {"oneOf": [{"type": "null"}, _obj({"max_rank1": _FRACTION})]},
                "keypoints": _obj(
                    {
                        "body_ap_min": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                        "head_ap_min": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                        "arms_ap_min": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                        "legs_ap_min": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                        "face_nme_max": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
                        "face_expression_nme_max": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
                    }
                ),
                "face_realism": {
                    "oneOf": [
                        {"type": "null"},
                        _obj(
                            {
                                "score_ratio_min": {"type": ["number", "null"], "minimum": 0, "maximum": 2},
                                "mesh_presence_min": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                                "eye_correlation_min": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
                                "eye_deviation_max": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
                                "corner_lift_max": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
                                "mouth_correlation_min": {"type": ["number", "null"], "minimum": -1, "maximum": 1},
                                "mouth_opening_change_max": {"type": ["number", "null"], "exclusiveMinimum": 0, "maximum": 1},
                            }
                        ),
                    ]
                },
                "endpoints": {
                    "oneOf": [
                        {"type": "null"},
                        _obj(
                            {
                                "sample_every": {"type": ["integer", "null"], "minimum": 1},
                                # a list, so that a child profile's list replaces its parent's (mappings merge)
                                "tolerances": {
                                    "type": "array",
                                    "items": {
                                        "oneOf": [
                                            _obj({"endpoint": {"enum": list(ENDPOINTS)}, "relative": {"type": "number", "exclusiveMinimum": 0}}, required=["endpoint", "relative"]),
                                            _obj({"endpoint": {"enum": list(ENDPOINTS)}, "absolute": {"type": "number", "exclusiveMinimum": 0}}, required=["endpoint", "absolute"]),
                                        ]
                                    },
                                },
                            }
                        ),
                    ]
                },
                "ocr": _obj({"enabled": {"type": "boolean"}, "sample_every": {"type": "integer", "minimum": 1}}),
                "leak_scan": {"type": "boolean"},
                "residual_faces": {"type": "boolean"},
            }
        ),
        "output": _obj(
            {
                "syntax": {"enum": list(OUTPUT_SYNTAXES)},
                "quality": {"type": "integer", "minimum": 0, "maximum": 100},
            }
        ),
    }
)


# --------------------------------------------------------------------------------------------------
# the resolved profile
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeidSettings:
    """Header de-identification: the PS3.15 options applied on top of the Basic Profile."""

    options: tuple[str, ...] = ()
    #: extra attributes to keep as they are (keyword or ``"(gggg,eeee)"``)
    keep: tuple[str, ...] = ()
    #: private attributes to treat as safe beyond the standard's list (``"(gggg,xxee) CREATOR"``)
    safe_private_extra: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClinicalSettings:
    """Rules for the clinical table: one action per column; unlisted columns take ``default``."""

    id_column: str = "patient_id"
    columns: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: action for columns the profile does not list; ``drop`` so that a new column never leaks
    default: str = "drop"
    age_band_years: int = 5

    def action_for(self, column: str) -> str:
        """The action for ``column`` (the id column is always pseudonymized)."""
        if column == self.id_column:
            return "pseudonymize"
        return self.columns.get(column, self.default)


@dataclass(frozen=True)
class FacesSettings:
    """Face detection and tracking, and which track is the patient."""

    enabled: bool = True
    patient_rule: str = "largest"
    min_face_px: int = 24
    #: find hands in front of faces and leave them as they are (see clinrelease.face.occlusion)
    keep_hands: bool = False
    #: swapped faces under 40 px: ``upscaled_swap``, ``textured_blur`` or ``swap`` (clinrelease.face.small)
    small_face: str = "upscaled_swap"
    #: swapped faces turned beyond the mesh (profile view, back of the head): ``blur`` (textured),
    #: ``swap_anyway`` or ``quarantine`` the item
    profile_view: str = "blur"
    #: nose-tip offset from the eyes' midpoint (eye spans) past which a face counts as turned away
    profile_yaw: float = PROFILE_YAW
    #: the exam must show the patient's face: a video where no sampled frame of the original shows a
    #: face the checks can compare is quarantined (the detectors failed). False (a gait filmed from
    #: behind): such a video is released without the re-id and face-realism figures, which need a
    #: face, and its record counts the frames with one (``faces_in_original``: 0)
    required: bool = True


@dataclass(frozen=True)
class AnonymizerSettings:
    """The anonymizer for the patient's face, its parameters and what happens to bystanders."""

    name: str = "swap"
    #: as the profile writes them; declared (defaults, ranges) in :class:`clinrelease.face.params.SwapParams`
    params: Mapping[str, Any] = field(
        default_factory=lambda: MappingProxyType(
            {"identity_strength": SwapParams.identity_strength, "k_donors": SwapParams.k_donors, "pool": SwapParams.pool}
        )
    )
    bystander: str = "textured_blur"

    @property
    def identity_strength(self) -> float:
        """0 keeps the patient's face geometry, 1 moves it fully to the surrogate's."""
        return float(self.params.get("identity_strength", SwapParams.identity_strength))

    @property
    def k_donors(self) -> int:
        return int(self.params.get("k_donors", SwapParams.k_donors))

    @property
    def pool(self) -> str:
        return str(self.params.get("pool", SwapParams.pool))

    @property
    def model(self) -> str | None:
        value = self.params.get("model")
        return None if value is None else str(value)


@dataclass(frozen=True)
class RecognizerCheck:
    """One face recognizer's decision threshold and how many sampled frames may match.

    The recognizer defines the direction: dlib's value is a distance (a match below the threshold),
    SFace's and ArcFace's a cosine similarity (a match at or above it).
    """

    threshold: float
    max_matched_fraction: float = 0.0
    model: str | None = None


@dataclass(frozen=True)
class GalleryCheck:
    """Re-identification against a gallery of enrolled faces: the largest rank-1 hit rate allowed."""

    max_rank1: float = 0.0


@dataclass(frozen=True)
class KeypointThresholds:
    """Clinical-utility thresholds; ``None`` means the group is not checked."""

    body_ap_min: float | None = None
    head_ap_min: float | None = None
    arms_ap_min: float | None = None
    legs_ap_min: float | None = None
    face_nme_max: float | None = None
    #: the face's movement only (the swap's constant shape change removed): what a facial exam reads
    face_expression_nme_max: float | None = None


@dataclass(frozen=True)
class FaceRealismCheck:
    """The released face must still read as a face with the patient's expression
    (:mod:`clinrelease.verify.realism`); ``None`` switches one limit off."""

    #: released faces' summed YuNet score over the original's (a lost face scores 0)
    score_ratio_min: float | None = 0.9
    #: fraction of frames where the face mesh still finds the released face
    mesh_presence_min: float | None = 0.95
    #: eye-opening (EAR) series correlation, judged where the original's eyes move (blinks)
    eye_correlation_min: float | None = 0.6
    #: mean EAR deviation once the constant offset (the surrogate's eye shape) is removed
    eye_deviation_max: float | None = 0.06
    #: |median mouth-corner lift change| in outer-eye distances (a grin the patient does not make)
    corner_lift_max: float | None = 0.06
    #: mouth-opening series correlation, judged where the original's mouth moves (speech)
    mouth_correlation_min: float | None = None
    #: |median mouth-opening change| (inner-lip gap over mouth width) as the face mesh reads it: the
    #: surrogate's closed mouth drawn over the patient's open one, or parted lips over a closed one
    mouth_opening_change_max: float | None = None


@dataclass(frozen=True)
class EndpointChecks:
    """Clinical endpoints measured on original and released video (:mod:`clinrelease.verify.endpoints`),
    each with the tolerance its released value must keep."""

    #: None: the verification's own sample_every
    sample_every: int | None = None
    #: ``{"endpoint": NAME, "relative": x}`` or ``{..., "absolute": x}`` entries, as the profile writes them
    tolerances: tuple[Mapping[str, Any], ...] = ()

    def judged(self) -> dict[str, Tolerance]:
        """The tolerances by endpoint, as :mod:`clinrelease.verify.endpoints` takes them."""
        out = {}
        for entry in self.tolerances:
            kind = "relative" if "relative" in entry else "absolute"
            out[str(entry["endpoint"])] = Tolerance(kind, float(entry[kind]))
        return out


@dataclass(frozen=True)
class OcrSettings:
    """Burned-in text check on released frames."""

    enabled: bool = True
    sample_every: int = 30


@dataclass(frozen=True)
class VerifySettings:
    """What the verification stage checks before an item may be released."""

    sample_every: int = 5
    recognizers: Mapping[str, RecognizerCheck] = field(
        default_factory=lambda: MappingProxyType(
            {"dlib": RecognizerCheck(threshold=0.6), "sface": RecognizerCheck(threshold=0.363)}
        )
    )
    gallery: GalleryCheck | None = field(default_factory=GalleryCheck)
    keypoints: KeypointThresholds = field(default_factory=KeypointThresholds)
    #: None: the released face is not judged as a face (no faces, or a blur/mask anonymizer)
    face_realism: FaceRealismCheck | None = None
    #: None: no clinical endpoint is judged
    endpoints: EndpointChecks | None = None
    ocr: OcrSettings = field(default_factory=OcrSettings)
    leak_scan: bool = True
    residual_faces: bool = True


@dataclass(frozen=True)
class OutputSettings:
    """How released pixel data is encoded."""

    syntax: str = "h264"
    #: CRF for h264/hevc/mpeg2 (lower is better), JPEG quality 1-100 for jpeg, unused for native
    quality: int = 18


@dataclass(frozen=True)
class Profile:
    """A resolved, validated release profile (``extends`` already merged, defaults filled in)."""

    name: str
    description: str = ""
    #: the parent as written in the file, or ``None``
    extends: str | None = None
    deid: DeidSettings = field(default_factory=DeidSettings)
    clinical: ClinicalSettings = field(default_factory=ClinicalSettings)
    faces: FacesSettings = field(default_factory=FacesSettings)
    anonymizer: AnonymizerSettings | None = field(default_factory=AnonymizerSettings)
    verify: VerifySettings = field(default_factory=VerifySettings)
    output: OutputSettings = field(default_factory=OutputSettings)
    #: the file this profile was read from (not part of the digest: it differs between machines)
    source: Path | None = field(default=None, compare=False)
    #: files merged to build it, from the root ancestor to this file
    chain: tuple[Path, ...] = field(default=(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The resolved profile as plain JSON-ready data (every default spelled out)."""
        data = _plain(self)
        data.pop("source", None)
        data.pop("chain", None)
        return data

    @property
    def digest(self) -> str:
        """``sha256:<hex>`` of the RFC 8785 canonical JSON of :meth:`to_dict`, for the audit log."""
        import rfc8785

        return "sha256:" + hashlib.sha256(rfc8785.dumps(self.to_dict())).hexdigest()


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


@dataclass(frozen=True)
class ProfileProblem:
    """One thing wrong with a profile: the file, the key path (dotted) and what is allowed."""

    file: str
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.message}" if self.key else f"{self.file}: {self.message}"


class ProfileError(ConfigError):
    """A profile that cannot be used; :attr:`problems` lists every problem found (exit code 2)."""

    def __init__(self, problems: list[ProfileProblem]) -> None:
        self.problems = problems
        if len(problems) == 1:
            text = str(problems[0])
        else:
            text = f"{len(problems)} problems in the profile:\n" + "\n".join(f"  {p}" for p in problems)
        super().__init__(text)
        self.path = Path(problems[0].file) if problems else None


@dataclass(frozen=True)
class ProfileInfo:
    """A profile found on the search path, as :func:`list_profiles` reports it."""

    name: str
    description: str
    extends: str | None
    path: Path


# --------------------------------------------------------------------------------------------------
# lookup
# --------------------------------------------------------------------------------------------------


def profile_dirs() -> list[Path]:
    """Folders searched for profiles by name: ``CLINRELEASE_PROFILE_PATH`` folders, then the shipped ones."""
    dirs = [Path(p) for p in os.environ.get(PROFILE_PATH_ENV, "").split(os.pathsep) if p.strip()]
    package = Path(clinrelease.__file__).resolve()
    # the repository's top-level folder (source checkouts, editable installs), then a copy inside the
    # package (wheels, where only package data travels)
    dirs += [package.parents[1] / "profiles", package.parent / "profiles"]
    seen: set[Path] = set()
    unique = []
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if key not in seen:
            seen.add(key)
            unique.append(d)
    return unique


def _looks_like_path(name_or_path: str | Path) -> bool:
    text = str(name_or_path)
    return isinstance(name_or_path, Path) or text.endswith((".yaml", ".yml")) or "/" in text or os.sep in text


def find_profile(name_or_path: str | Path, near: Path | None = None) -> Path:
    """The file a profile name or path refers to.

    Parameters
    ----------
    name_or_path:
        A profile name (``pd_gait``) or a path to a ``.yaml`` file.
    near:
        A folder searched first (the folder of a child profile, for ``extends``).

    Raises
    ------
    ConfigError
        When no such profile exists; the message lists the names that do.
    """
    if _looks_like_path(name_or_path):
        path = Path(name_or_path)
        if not path.is_absolute() and near is not None and (near / path).is_file():
            return near / path
        if path.is_file():
            return path
        raise ConfigError("no such profile file", path)
    name = str(name_or_path)
    if not re.fullmatch(_NAME["pattern"], name):
        raise ConfigError(f"{name!r} is not a profile name (letters, digits, '_', '.', '-') or a .yaml path")
    folders = ([near] if near is not None else []) + profile_dirs()
    for folder in folders:
        for suffix in (".yaml", ".yml"):
            candidate = folder / f"{name}{suffix}"
            if candidate.is_file():
                return candidate
    known = ", ".join(p.name for p in list_profiles(include_hidden=True)) or "none"
    raise ConfigError(
        f"no profile named {name!r} (known: {known}; searched {', '.join(str(f) for f in folders)}; "
        f"add folders with {PROFILE_PATH_ENV})"
    )


def list_profiles(include_hidden: bool = False) -> list[ProfileInfo]:
    """Every profile on the search path, sorted by name; the first folder wins on a duplicate name.

    Names starting with ``_`` are building blocks for ``extends`` and are listed only with
    ``include_hidden``. A file that cannot be read is listed with its problem as description.
    """
    found: dict[str, ProfileInfo] = {}
    for folder in profile_dirs():
        if not folder.is_dir():
            continue
        for path in sorted([*folder.glob("*.yaml"), *folder.glob("*.yml")]):
            name = path.stem
            if name in found or (name.startswith("_") and not include_hidden):
                continue
            try:
                doc = _read_yaml(path)
                found[name] = ProfileInfo(
                    name=name,
                    description=str(doc.get("description", "")).strip(),
                    extends=doc.get("extends"),
                    path=path,
                )
            except ProfileError as exc:
                found[name] = ProfileInfo(name, f"(unreadable: {exc.problems[0].message})", None, path)
    return [found[k] for k in sorted(found)]


# --------------------------------------------------------------------------------------------------
# loading
# --------------------------------------------------------------------------------------------------


def _display(path: Path) -> str:
    """A path as users like to read it: relative to the working folder when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError([ProfileProblem(_display(path), "", f"cannot read the file: {exc}")]) from exc
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f"line {mark.line + 1}, column {mark.column + 1}: "
        problem = getattr(exc, "problem", None) or str(exc)
        raise ProfileError([ProfileProblem(_display(path), "", f"{where}not valid YAML: {problem}")]) from exc
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ProfileError(
            [ProfileProblem(_display(path), "", f"a profile is a mapping of sections, not a {type(doc).__name__}")]
        )
    return doc


def merge(parent: Mapping[str, Any], child: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``child`` over ``parent``: mappings recursively, the child wins, lists replace.

    ``None`` replaces whatever the parent had (switching a check or section off, or dropping a
    recognizer or clinical column rule), rather than falling back to the default.
    """
    merged = copy.deepcopy(dict(parent))
    for key, value in child.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _key_path(parts: Iterable[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _schema_problems(doc: Mapping[str, Any], file: str) -> list[ProfileProblem]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(PROFILE_SCHEMA)
    problems = []
    for error in validator.iter_errors(doc):
        problems.extend(_describe(error, file))
    return sorted(set(problems), key=lambda p: (p.key, p.message))


def _describe(error: Any, file: str) -> list[ProfileProblem]:
    """Turn one jsonschema error into problems a person can act on."""
    key = _key_path(error.absolute_path)
    value = error.instance
    schema = error.schema
    kind = error.validator
    if kind == "oneOf":
        # a section that may be null or a mapping: report the mapping's own errors
        nested = [e for e in (error.context or []) if e.validator != "type" or e.schema.get("type") != "null"]
        if nested:
            return [p for e in nested for p in _describe(e, file)]
    if kind in ("minimum", "maximum", "exclusiveMinimum"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        high = schema.get("maximum")
        if low is not None and high is not None:
            message = f"{value!r} is not between {low} and {high}"
        elif low is not None:
            message = f"{value!r} must be {'above' if 'exclusiveMinimum' in schema else 'at least'} {low}"
        else:
            message = f"{value!r} must be at most {high}"
    elif kind == "enum":
        allowed = ", ".join(str(v) for v in schema["enum"] if v is not None)
        message = f"{value!r} is not allowed (allowed: {allowed})"
    elif kind == "additionalProperties" and schema.get("additionalProperties") is False:
        allowed_keys = sorted(schema.get("properties", {}))
        unknown = sorted(set(value) - set(allowed_keys))
        return [
            ProfileProblem(file, _key_path([*error.absolute_path, name]), f"unknown key (allowed here: {', '.join(allowed_keys)})")
            for name in unknown
        ]
    elif kind == "type":
        wanted = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        wanted_text = " or ".join({"object": "a mapping", "array": "a list", "null": "null"}.get(t, f"a {t}") for t in wanted)
        message = f"{value!r} is not {wanted_text}"
    elif kind == "pattern":
        message = f"{value!r} does not have the allowed form ({_PATTERN_HELP.get(schema['pattern'], schema['pattern'])})"
    elif kind == "uniqueItems":
        message = "lists the same entry twice"
    elif kind == "required":
        message = error.message.replace("is a required property", "is required")
    else:
        message = error.message
    return [ProfileProblem(file, key, message)]


_PATTERN_HELP = {
    _NAME["pattern"]: "letters, digits, '_', '.', '-'",
    _TAG_OR_KEYWORD["pattern"]: "a DICOM keyword such as PatientSex, or a tag such as (0010,0040)",
    _PRIVATE_TAG["pattern"]: "a private tag such as (0019,xx0c) followed by its private creator",
}


def _semantic_problems(doc: Mapping[str, Any], file: str) -> list[ProfileProblem]:
    """Rules that span sections or need more than a schema (DICOM keywords, installed plug-ins)."""
    # the document may also have failed the schema: read it defensively
    problems: list[ProfileProblem] = []
    deid = _mapping(doc.get("deid"))
    options = {o for o in _list(deid.get("options")) if isinstance(o, str)}
    faces_enabled = _mapping(doc.get("faces")).get("enabled", FacesSettings.enabled) is not False
    anonymizer = doc.get("anonymizer", {})  # absent means the default (swap); None means none
    if {"retain_long_full_dates", "retain_long_modified_dates"} <= options:
        problems.append(
            ProfileProblem(file, "deid.options", "retain_long_full_dates and retain_long_modified_dates exclude each other")
        )
    if "clean_recognizable_visual_features" in options and not faces_enabled:
        problems.append(
            ProfileProblem(
                file,
                "deid.options",
                "clean_recognizable_visual_features needs faces.enabled: true (the option declares faces were made unrecognizable)",
            )
        )
    if faces_enabled and anonymizer is None:
        problems.append(ProfileProblem(file, "anonymizer", "faces.enabled is true but no anonymizer is set"))
    if isinstance(anonymizer, Mapping) and "name" in anonymizer:
        name = anonymizer["name"]
        plugins = sorted(ep.name for ep in importlib.metadata.entry_points(group=ANONYMIZER_ENTRY_POINT_GROUP))
        if isinstance(name, str) and name not in BUILTIN_ANONYMIZERS and name not in plugins:
            problems.append(
                ProfileProblem(
                    file,
                    "anonymizer.name",
                    f"{name!r} is not a known anonymizer (built in: {', '.join(BUILTIN_ANONYMIZERS)}; "
                    f"installed plug-ins: {', '.join(plugins) or 'none'})",
                )
            )
    if isinstance(anonymizer, Mapping):
        name = anonymizer.get("name", AnonymizerSettings.name)
        for key, message in param_problems(name, anonymizer.get("bystander", AnonymizerSettings.bystander), _mapping(anonymizer.get("params"))):
            problems.append(ProfileProblem(file, f"anonymizer.params.{key}", message))
    verify = _mapping(doc.get("verify"))
    if faces_enabled and "recognizers" in verify and not verify["recognizers"]:
        problems.append(
            ProfileProblem(file, "verify.recognizers", "faces.enabled is true but no recognizer would check the faces")
        )
    if verify.get("face_realism") is not None:
        if not faces_enabled:
            problems.append(ProfileProblem(file, "verify.face_realism", "judges released faces, but faces.enabled is false"))
        elif isinstance(anonymizer, Mapping) and anonymizer.get("name") in ("blur", "mask", "pixelate"):
            problems.append(
                ProfileProblem(
                    file,
                    "verify.face_realism",
                    f"judges whether the released face still reads as a face; the {anonymizer['name']} anonymizer "
                    "leaves none (set verify.face_realism: null)",
                )
            )
    for name, spec in _mapping(verify.get("recognizers")).items():
        if isinstance(spec, Mapping) and "threshold" not in spec:
            problems.append(ProfileProblem(file, f"verify.recognizers.{name}.threshold", "is required"))
    for index, entry in enumerate(_list(deid.get("keep"))):
        if isinstance(entry, str) and not entry.startswith("(") and not _is_dicom_keyword(entry):
            problems.append(ProfileProblem(file, f"deid.keep[{index}]", f"{entry!r} is not a DICOM keyword"))
    output = _mapping(doc.get("output"))
    syntax, quality = output.get("syntax", OutputSettings.syntax), output.get("quality")
    if syntax in CRF_SYNTAXES and isinstance(quality, int) and quality > 51:
        problems.append(ProfileProblem(file, "output.quality", f"{quality} is not between 0 and 51 (a CRF for {syntax})"))
    if syntax == "jpeg" and isinstance(quality, int) and quality < 1:
        problems.append(ProfileProblem(file, "output.quality", f"{quality} is not between 1 and 100 (JPEG quality)"))
    return problems


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _is_dicom_keyword(keyword: str) -> bool:
    from pydicom.datadict import tag_for_keyword

    return tag_for_keyword(keyword) is not None


def _resolve_document(
    path: Path, seen: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], tuple[Path, ...], list[ProfileProblem]]:
    """Read ``path`` and merge it over its ``extends`` ancestors.

    Returns the merged document, the chain of files (root ancestor first) and the schema problems
    of each file on its own, so that one run reports every problem of every file.
    """
    file = _display(path)
    real = path.resolve()
    if real in seen:
        cycle = " -> ".join(_display(p) for p in (*seen, real))
        raise ProfileError([ProfileProblem(file, "extends", f"profiles extend each other in a cycle: {cycle}")])
    doc = _read_yaml(path)
    problems = _schema_problems(doc, file)
    parent_name = doc.get("extends")
    if not isinstance(parent_name, str):
        return doc, (real,), problems
    try:
        parent_path = find_profile(parent_name, near=path.parent)
    except ConfigError as exc:
        return doc, (real,), [*problems, ProfileProblem(file, "extends", exc.message)]
    parent_doc, chain, parent_problems = _resolve_document(parent_path, (*seen, real))
    # name and description describe one file; they are not inherited
    parent_doc = {k: v for k, v in parent_doc.items() if k not in ("name", "description", "extends")}
    return merge(parent_doc, doc), (*chain, real), parent_problems + problems


def validate_profile(name_or_path: str | Path) -> list[ProfileProblem]:
    """Every problem with a profile (and its ``extends`` ancestors); an empty list when it is usable."""
    try:
        load_profile(name_or_path)
    except ProfileError as exc:
        return exc.problems
    except ConfigError as exc:
        return [ProfileProblem(str(exc.path) if exc.path else str(name_or_path), "", exc.message)]
    return []


def load_profile(name_or_path: str | Path) -> Profile:
    """Find, merge, validate and resolve a profile.

    Parameters
    ----------
    name_or_path:
        A profile name (``pd_gait``, looked up in :func:`profile_dirs`) or a path to a ``.yaml`` file.

    Returns
    -------
    Profile
        Frozen, with every default filled in; :attr:`Profile.digest` identifies it in the audit log.

    Raises
    ------
    ProfileError
        With every problem found, each naming the file, the key and what is allowed.
    ConfigError
        When no such profile exists.
    """
    path = find_profile(name_or_path)
    doc, chain, problems = _resolve_document(path)
    file = _display(path)
    if not problems:
        # the merge can combine valid parts into an invalid whole: check the result again
        problems = _schema_problems(doc, file)
    problems += [p for p in _semantic_problems(doc, file) if p not in problems]
    if problems:
        raise ProfileError(problems)
    return _build(doc, path, chain)


def _build(doc: Mapping[str, Any], path: Path, chain: tuple[Path, ...]) -> Profile:
    deid = doc.get("deid", {})
    clinical = doc.get("clinical", {})
    anonymizer_doc = doc.get("anonymizer", {})
    verify = doc.get("verify", {})
    anonymizer = None
    if anonymizer_doc is not None:
        default_params = dict(AnonymizerSettings().params)
        anonymizer = AnonymizerSettings(
            **{k: v for k, v in anonymizer_doc.items() if k != "params"},
            params=MappingProxyType({**default_params, **anonymizer_doc.get("params", {})}),
        )
    verify_kwargs: dict[str, Any] = {k: v for k, v in verify.items() if k in ("sample_every", "leak_scan", "residual_faces")}
    if "recognizers" in verify:
        verify_kwargs["recognizers"] = MappingProxyType(
            {name: RecognizerCheck(**spec) for name, spec in sorted(verify["recognizers"].items()) if spec is not None}
        )
    if "gallery" in verify:
        verify_kwargs["gallery"] = None if verify["gallery"] is None else GalleryCheck(**verify["gallery"])
    if "keypoints" in verify:
        verify_kwargs["keypoints"] = KeypointThresholds(**verify["keypoints"])
    if verify.get("face_realism") is not None:
        verify_kwargs["face_realism"] = FaceRealismCheck(**verify["face_realism"])
    if verify.get("endpoints") is not None:
        spec = verify["endpoints"]
        tolerances = tuple(MappingProxyType(dict(t)) for t in spec.get("tolerances") or ())
        verify_kwargs["endpoints"] = EndpointChecks(spec.get("sample_every"), tolerances)
    if "ocr" in verify:
        verify_kwargs["ocr"] = OcrSettings(**verify["ocr"])
    return Profile(
        name=str(doc.get("name") or path.stem),
        description=str(doc.get("description", "")).strip(),
        extends=doc.get("extends"),
        deid=DeidSettings(**{k: tuple(v) for k, v in deid.items()}),
        clinical=ClinicalSettings(
            **{k: v for k, v in clinical.items() if k != "columns"},
            columns=MappingProxyType({k: v for k, v in sorted(clinical.get("columns", {}).items()) if v is not None}),
        ),
        faces=FacesSettings(**doc.get("faces", {})),
        anonymizer=anonymizer,
        verify=VerifySettings(**verify_kwargs),
        output=OutputSettings(**doc.get("output", {})),
        source=path,
        chain=chain,
    )
