"""A release from a DICOMweb source to a DICOMweb target: stage -> release -> verify the signed log -> push.

The release itself is :func:`clinrelease.release.run_release` over the staged studies, unchanged: the
local release folder (data, report, audit log, manifest) is written as for a folder release. Nothing
is pushed unless the release was finalized (signed) and :func:`clinrelease.audit.verify.verify_release`
passes on it; only released (verified) items are pushed.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clinrelease.errors import ConfigError, VerificationError
from clinrelease.pacs.servers import Server
from clinrelease.pacs.source import StagedStudy, select_studies, stage_study
from clinrelease.pacs.target import PushResult, push_release

if TYPE_CHECKING:
    from clinrelease.release.record import ItemRecord

#: ``progress(stage, done, total, detail)``: stage is select, fetch, release, push or done
Progress = Callable[[str, int, int, str], None]


@dataclass
class PacsSummary:
    """What a DICOMweb release did."""

    release: Any  # clinrelease.release.ReleaseSummary
    studies: list[StagedStudy]
    push: PushResult | None
    staging: Path


def staging_for(output: Path) -> Path:
    """Where studies are staged by default: beside the release, like OUT.work (never inside it)."""
    output = output.resolve()
    return output.with_name(output.name + ".pacs")


def run_pacs_release(
    opts,  # clinrelease.release.ReleaseOptions; its inputs are replaced by the staged studies
    source: Server,
    target: Server | None,
    study_uids: list[str],
    query: dict[str, str],
    staging: Path | None = None,
    keep_staging: bool = False,
    progress: Progress | None = None,
    on_item: Callable[[ItemRecord], None] | None = None,
) -> PacsSummary:
    from clinrelease.audit.verify import verify_release
    from clinrelease.release import ReleasePaths, load_records, run_release

    report = progress or (lambda stage, done, total, detail: None)
    staging = (staging or staging_for(opts.output)).resolve()
    paths = ReleasePaths.for_output(opts.output, opts.quarantine, opts.work)
    if opts.shard is not None:
        raise ConfigError("a DICOMweb release is not sharded; run it whole")
    if staging == paths.output or paths.output in staging.parents:
        raise ConfigError("the staging folder holds originals and must live outside the release folder", staging)

    report("select", 0, 0, source.label)
    uids = select_studies(source, study_uids, query)
    staged = []
    for n, uid in enumerate(uids):
        report("fetch", n, len(uids), uid)
        staged.append(stage_study(source, uid, staging))
    report("fetch", len(uids), len(uids), "")

    done_items = [0]

    def item_done(record: ItemRecord) -> None:
        done_items[0] += 1
        report("release", done_items[0], 0, "")
        if on_item:
            on_item(record)

    release_opts = dataclasses.replace(opts, inputs=[study.folder for study in staged])
    summary = run_release(release_opts, on_item=item_done)
    push = None
    if target is not None:
        verified = verify_release(summary.output, Path(opts.keys_dir) / "signing.pub")
        if not verified.ok:
            raise VerificationError(
                "the release's signed audit log does not verify, so nothing was pushed: " + "; ".join(verified.failures[:3]),
                summary.output,
            )
        records = load_records(paths)
        push = push_release(
            target,
            summary.output,
            records,
            paths.work / "pacs-pushed.jsonl",
            on_instance=lambda n, total: report("push", n, total, target.label),
        )
    if not keep_staging:
        shutil.rmtree(staging, ignore_errors=True)  # originals: the source still holds them
    report("done", 1, 1, "")
    return PacsSummary(summary, staged, push, staging)
