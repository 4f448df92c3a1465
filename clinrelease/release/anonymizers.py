"""The patient's and bystanders' anonymizers for one item, and the patient's surrogate: the key's
decision (:mod:`clinrelease.face.surrogate_choice`), stored with the key once made."""

from __future__ import annotations

from typing import Any

from clinrelease.release.work import ItemContext


def build_anonymizers(profile, key: bytes, pseudonym: str, counter: int = 0, pool=None):
    """The profile's patient and bystander anonymizers, keyed to this patient; the built-in swap
    gives the patient the ``counter``-th surrogate of the key's sequence, with that counter's swap
    settings (:func:`~clinrelease.face.surrogate_choice.swap_settings`), from ``pool`` instead of
    the profile's pool where given."""
    from clinrelease.face.params import BASELINE_ANONYMIZERS, anonymizer_arguments
    from clinrelease.face.registry import get_anonymizer
    from clinrelease.face.surrogate_choice import swap_settings

    settings = profile.anonymizer
    params = settings.params if pool is None else {**settings.params, "pool": pool}

    def arguments(name: str, params: dict[str, Any], **keyed: Any) -> dict[str, Any]:
        return {} if name in BASELINE_ANONYMIZERS else {**anonymizer_arguments(name, params), "key": key, "pseudonym": pseudonym, **keyed}

    if settings.name == "swap":
        patient = get_anonymizer("swap", **arguments("swap", {**params, **swap_settings(counter)}, counter=counter))
    else:
        patient = get_anonymizer(settings.name, **arguments(settings.name, params))
    bystander = get_anonymizer(settings.bystander, **arguments(settings.bystander, params))
    return patient, bystander


def surrogate_decision(ctx: ItemContext, profile, analysis, source, pseudonym: str, methods=None):
    """The patient's place in the key's surrogate sequence (:mod:`clinrelease.face.surrogate_choice`):
    stored with the key once decided, else measured on this item's frames; None where the profile's
    anonymizer draws no surrogate or no recognizer checks faces."""
    if profile.anonymizer.name != "swap" or not profile.verify.recognizers:
        return None
    from clinrelease.face.surrogate_choice import ChoiceStore

    def measure():
        return measure_surrogate(profile, ctx.release_key, pseudonym, analysis, source.frames(), methods)

    return ChoiceStore(ctx.choices_dir or ctx.paths.work, ctx.release_key).decide(pseudonym, measure)


def measure_surrogate(profile, key: bytes, pseudonym: str, analysis, frames, methods=None):
    """The screening of the key's surrogates for this patient on ``frames`` (an iterable, decoded
    once), as the release measures it; None when there is no patient face to measure on."""
    from clinrelease.face.small import size_aware
    from clinrelease.face.surrogate_choice import PREFERRED_MOUTH_LIMIT, RANK_FRAMES, patient_samples, screen, spread
    from clinrelease.verify.reid import profile_recognizers

    # the frames to confirm and rank on, where re-id will sample; screened on a few of them
    wider = patient_samples(frames, analysis, count=RANK_FRAMES, every=profile.verify.sample_every)
    samples = spread(wider)
    if not samples:
        return None  # no patient face to measure on: the first surrogate, nothing decided
    recognizers = {name: (rec, rec.threshold) for name, rec in profile_recognizers(profile.verify).items()}
    pool = None
    if profile.anonymizer.params.get("pool") == "generator":
        from clinrelease.face.generator import GeneratorPool, patient_embeddings

        # a generated face the recognizers take for this patient is skipped before it is swapped on
        pool = GeneratorPool(avoid=patient_embeddings(samples, sorted(recognizers)))
    # candidates are tried as the item will be rendered (small faces upscaled, turned ones blurred)
    anonymizer_for = lambda c: size_aware(build_anonymizers(profile, key, pseudonym, counter=c, pool=pool)[0], methods)  # noqa: E731
    # a surrogate that redraws the patient's mouth is passed over: the face-realism check quarantines
    # it where the profile judges the mouth, and it is the worse surrogate where it does not
    realism = profile.verify.face_realism
    mouth_limit = None if realism is None else (realism.mouth_opening_change_max or PREFERRED_MOUTH_LIMIT)
    decision = screen(samples, anonymizer_for, analysis.patient.track_id, analysis, recognizers, more_samples=wider, mouth_limit=mouth_limit)
    if pool is not None:
        from clinrelease.face.surrogates import sequence_member

        decision.attempt = pool.attempt_for(key, sequence_member(pseudonym, decision.counter))
    return decision


def decided_generator_pool(decision, pseudonym: str):
    """A generated pool that draws the face decided with the patient's embeddings (stored with the
    decision, so items and shards that did not measure draw the same face); None otherwise."""
    if decision is None or decision.attempt is None:
        return None
    from clinrelease.face.generator import GeneratorPool
    from clinrelease.face.surrogates import sequence_member

    return GeneratorPool(attempts={sequence_member(pseudonym, decision.counter): decision.attempt})
