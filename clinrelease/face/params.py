"""Anonymizer parameters, declared once: what a profile's ``anonymizer.params`` may say, the defaults
and the allowed ranges, and how they become an anonymizer's keyword arguments.

The profile loader validates a profile's parameters against these declarations (so a typo or an
out-of-range value is reported with the file and key when the profile loads, before any item
runs), and the anonymizers take their defaults and their own checks from the same declarations.
Third-party anonymizers (entry points) take whatever parameters they accept; their constructors
judge them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from clinrelease.errors import ConfigError
from clinrelease.face.geometry import RING_SCALE

__all__ = [
    "BASELINE_ANONYMIZERS",
    "MODEL_AFTER_RUN",
    "SwapParams",
    "anonymizer_arguments",
    "check_swap_arguments",
    "param_problems",
]

#: the built-in anonymizers that take no parameter (the profile's swap parameters do not reach them)
BASELINE_ANONYMIZERS = ("blur", "pixelate", "mask", "textured_blur")
#: what happens to a learned model trained on a patient once every item is done
MODEL_AFTER_RUN = ("keep", "delete", "escrow")


def _param(default: Any, minimum: float | None = None, maximum: float | None = None, argument: str | None = None, what: str = "") -> Any:
    return field(default=default, metadata={"minimum": minimum, "maximum": maximum, "argument": argument, "what": what})


@dataclass(frozen=True)
class SwapParams:
    """The built-in swap's parameters (:class:`clinrelease.face.swap.SwapAnonymizer`), as a profile writes them."""

    identity_strength: float = _param(1.0, 0.0, 1.0, what="0 keeps the patient's face shape, 1 takes the surrogate's")
    k_donors: int = _param(3, 1, 64, argument="k", what="donors blended into one surrogate")
    #: ``default`` (the built-in pool of openpeople's synthetic people; ``openpeople`` says the same),
    #: ``generator`` or a folder of consented faces
    pool: str = _param("default", what="the donor pool")
    distinctiveness: float = _param(1.0, 1.0, what="how far surrogates are pushed from the pool's average face (1: plain k-Same)")
    mode_amplitude: float = _param(0.05, 0.0, what="the largest key-drawn shape change")
    reach: float = _param(0.0, 0.0, RING_SCALE - 1.0, what="how far past the face outline the surrogate reaches (face heights, inside the warped ring)")
    lighting: float = _param(0.12, 0.0, what="scale of the patient's shading field put onto the surrogate (face heights)")
    small_face_boost: float = _param(0.5, 0.0, what="extra identity offset for small faces")
    mouth_reach: float = _param(0.0, 0.0, 0.5, what="how far around the lips the patient's own shape is kept (face heights)")
    detail_reach: float = _param(0.0, 0.0, 0.5, what="neighbourhood over which the surrogate's features are toned to the patient's own (face heights; 0: one gain for the whole face)")
    brow_turn: float = _param(1.0, 0.0, 90.0, what="the most each eyebrow may turn from the patient's own angle against the eyes (degrees; 90: the surrogate's angle)")
    blend_levels: int = _param(0, 0, 6, what="coarser bands of the blend past the face's edge (Laplacian pyramid levels; 0: one alpha blend)")


#: parameters any anonymizer's profile may carry: what they are (the release reads them, not the anonymizer)
_PROFILE_PARAMS = ("model", "model_after_run")


def _number_problem(spec: dataclasses.Field, value: Any) -> str | None:
    wanted = int if spec.type in ("int", int) else float
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (wanted is int and not isinstance(value, int)):
        return f"{value!r} is not {'an integer' if wanted is int else 'a number'}"
    low, high = spec.metadata["minimum"], spec.metadata["maximum"]
    if (low is not None and value < low) or (high is not None and value > high):
        if low is not None and high is not None:
            return f"{value!r} is not between {_num(low)} and {_num(high)}"
        return f"{value!r} must be at least {_num(low)}" if low is not None else f"{value!r} must be at most {_num(high)}"
    return None


def _num(value: float) -> str:
    return f"{value:g}"


def param_problems(anonymizer: str | None, bystander: str | None, params: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(parameter, what is allowed) for every parameter of a profile's ``anonymizer.params`` that the
    built-in anonymizers cannot take; a plug-in patient anonymizer's own parameters are not judged here."""
    declared = {f.name: f for f in dataclasses.fields(SwapParams)}
    builtin = anonymizer in ("swap", *BASELINE_ANONYMIZERS)
    problems = []
    for key, value in params.items():
        if key == "model_after_run":
            if value not in MODEL_AFTER_RUN:
                problems.append((key, f"{value!r} is not allowed (allowed: {', '.join(MODEL_AFTER_RUN)})"))
        elif key == "model":
            if value is not None and not (isinstance(value, str) and value):
                problems.append((key, f"{value!r} is not a string"))
        elif key == "pool":
            if not (isinstance(value, str) and value):
                problems.append((key, f"{value!r} is not a string"))
        elif key in declared:
            problem = _number_problem(declared[key], value)
            if problem and (builtin or bystander == "swap"):
                problems.append((key, problem))
        elif builtin:
            problems.append((key, f"unknown key (allowed here: {', '.join([*declared, *_PROFILE_PARAMS])})"))
    return problems


def anonymizer_arguments(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """A profile's parameters as the keyword arguments of anonymizer ``name``."""
    if name in BASELINE_ANONYMIZERS:
        return {}
    if name == "swap":
        out = {}
        for spec in dataclasses.fields(SwapParams):
            if spec.name in params and not (spec.name == "pool" and params["pool"] == "default"):
                out[spec.metadata["argument"] or spec.name] = params[spec.name]
        return out
    # a plug-in takes the rest as given; the profile says k_donors where anonymizers say k
    out = {k: v for k, v in params.items() if k not in ("k_donors", "pool", "model_after_run")}
    if "k_donors" in params:
        out["k"] = params["k_donors"]
    return out


def check_swap_arguments(**arguments: Any) -> None:
    """Raise :class:`ConfigError` for a swap keyword argument outside its declared range."""
    by_argument = {f.metadata["argument"] or f.name: f for f in dataclasses.fields(SwapParams)}
    for name, value in arguments.items():
        problem = _number_problem(by_argument[name], value)
        if problem:
            raise ConfigError(f"{name}: {problem} ({by_argument[name].metadata['what']})")
