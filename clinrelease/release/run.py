"""A whole run: check the folders and the key, list the items, run them (:mod:`~clinrelease.release.backends`),
dispose of per-patient models, and merge (:mod:`~clinrelease.release.merge`) unless sharded.

The run holds the release lock (:mod:`clinrelease.lock`) from start to end; shards hold it shared.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from clinrelease.audit.identity import derive_release_id, release_nonce
from clinrelease.audit.records import utc_now
from clinrelease.crypto.digest import sha256_file
from clinrelease.errors import ConfigError
from clinrelease.items import InputItem, discover_items
from clinrelease.release.backends import execute, shard_items
from clinrelease.release.clinical_table import validate_clinical
from clinrelease.release.merge import merge_locked, refuse_strays
from clinrelease.release.paths import ReleasePaths, check_release_key, release_key_id, storage_errors
from clinrelease.release.record import ItemRecord, ReleaseSummary, load_json, load_records, write_json
from clinrelease.release.work import ItemContext


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
    on_item: Callable[[ItemRecord], None] | None = None,
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
    with storage_errors(paths.work), release_lock(paths.work, what, shared=opts.shard is not None):
        return _run_locked(opts, paths, profile, keys, items, on_start, on_item)


def _run_locked(opts, paths: ReleasePaths, profile, keys, items: list[InputItem], on_start, on_item) -> ReleaseSummary:
    from clinrelease.models import prefetch_model_inventory

    prefetch_model_inventory()  # the start record's model digests, hashed beside the items
    paths.make()
    release_meta = paths.work / "release.json"
    previous = load_json(release_meta)
    check_release_key(previous, keys.release_key, paths)
    if previous and previous.get("profile_digest") != profile.digest:
        raise ConfigError(
            f"{paths.output} was started with profile {previous.get('profile')} (another digest); "
            "use a new output folder for a different profile"
        )
    refuse_strays(paths, load_records(paths, every=True))
    # the whole input, before sharding: the merge releases these items and no others (withdrawal)
    write_json(paths.work / "inputs.json", {"items": [it.item_id for it in items]})
    items = shard_items(items, opts.shard)
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
    write_json(release_meta, meta)

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
    records = execute(items, ctx, opts.executor, opts.workers, opts.scheduler, on_item)
    if opts.shard is None:
        # only a whole release may dispose of the models: another shard may still need them
        disposed = dispose_patient_models(profile, records, escrow)
        if disposed:
            meta["models_disposed"] = disposed
            write_json(release_meta, meta)
    if escrow is not None and hasattr(escrow, "close"):
        escrow.close()
    if opts.shard is not None:
        return ReleaseSummary(paths.output, paths.quarantine, records, finalized=False)
    return merge_locked(paths, opts.keys_dir)



def _model_after_run(profile) -> str:
    """The profile's ``anonymizer.params.model_after_run`` (checked when the profile loads)."""
    return "keep" if profile.anonymizer is None else str(profile.anonymizer.params.get("model_after_run", "keep"))


def dispose_patient_models(profile, records: list[ItemRecord], escrow) -> list[dict[str, str]]:
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

    paths = {Path(str(model).replace("{pseudonym}", r.pseudonym)): r.pseudonym for r in records if r.pseudonym}
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

