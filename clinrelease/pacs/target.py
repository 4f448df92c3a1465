"""Push a finished release's instances to a research archive with STOW-RS.

Only the released files of a release whose signed audit log verifies are pushed (the caller checks;
:func:`push_release` takes the verified release folder). Instances are grouped by their released
Study Instance UID; before a study is pushed the target is asked (QIDO-RS) which of its instances it
holds already, and those are not sent again, so a re-run after a failure completes the study without
pushing anything twice. A STOW answer that reports an instance as already stored (failure reason
0x0111) counts as stored.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pydicom
import requests

from clinrelease.errors import ServerError
from clinrelease.pacs.servers import Server, connect, server_error

if TYPE_CHECKING:
    from clinrelease.release.record import ItemRecord

_DUPLICATE_SOP = 0x0111
#: the most bytes of released files sent in one STOW request (a larger study goes in several)
STOW_BATCH_BYTES = 256 << 20
_SOP_UID_TAG = "00080018"


@dataclass
class PushResult:
    """What a push did, per released study."""

    pushed: int = 0
    already_there: int = 0
    studies: list[dict[str, Any]] = field(default_factory=list)


def released_by_study(output: Path, records: list[ItemRecord]) -> dict[str, list[Path]]:
    """The released DICOM files of ``records``, by released Study Instance UID."""
    studies: dict[str, list[Path]] = {}
    for record in records:
        if not record.released or not record.output:
            continue
        path = output / record.output
        if path.suffix.lower() != ".dcm":
            continue
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["StudyInstanceUID"])
        studies.setdefault(str(ds.StudyInstanceUID), []).append(path)
    return studies


def push_release(
    server: Server,
    output: Path,
    records: list[ItemRecord],
    ledger: Path,
    on_instance: Callable[[int, int], None] | None = None,
) -> PushResult:
    """STOW-RS every released instance to ``server`` that it does not hold yet; ``ledger`` records each push.

    A study goes in one STOW request (several only past :data:`STOW_BATCH_BYTES`), so a server that
    dies or a connection that drops while a study is sent stores none of that request.
    """
    client = connect(server)
    studies = released_by_study(output, records)
    total = sum(len(files) for files in studies.values())
    result = PushResult()
    sent = 0
    for study_uid, files in sorted(studies.items()):
        doing = f"released study {study_uid}"
        present = _instances_on(client, server, study_uid, doing)
        pushed = 0
        for batch in _batches(sorted(files)):
            datasets = [pydicom.dcmread(path) for path in batch]
            todo = [(path, ds) for path, ds in zip(batch, datasets) if str(ds.SOPInstanceUID) not in present]
            if todo:
                try:
                    answer = client.store_instances([ds for _, ds in todo], study_instance_uid=study_uid)
                except Exception as exc:
                    raise server_error(
                        exc, server, f"pushing {doing} ({pushed} of {len(files)} instances stored in this run); re-run to complete it"
                    ) from None
                duplicates = _duplicates(answer, server, doing)
                for path, ds in todo:
                    sop_uid = str(ds.SOPInstanceUID)
                    if sop_uid in duplicates:
                        result.already_there += 1
                    else:
                        pushed += 1
                        _log(ledger, server, study_uid, sop_uid, path, output)
            result.already_there += len(batch) - len(todo)
            sent += len(batch)
            del datasets, todo
            if on_instance:
                on_instance(sent, total)
        result.pushed += pushed
        result.studies.append({"study_uid": study_uid, "instances": len(files), "pushed": pushed})
    return result


def _batches(files: list[Path]) -> list[list[Path]]:
    batches: list[list[Path]] = [[]]
    size = 0
    for path in files:
        length = path.stat().st_size
        if batches[-1] and size + length > STOW_BATCH_BYTES:
            batches.append([])
            size = 0
        batches[-1].append(path)
        size += length
    return batches


def _instances_on(client, server: Server, study_uid: str, doing: str) -> set[str]:
    try:
        hits = client.search_for_instances(study_instance_uid=study_uid, fields=[_SOP_UID_TAG], get_remaining=True)
    except requests.exceptions.HTTPError as exc:
        if exc.response is not None and exc.response.status_code == 404:
            return set()
        raise server_error(exc, server, f"asking which instances of {doing} it holds") from None
    except Exception as exc:
        raise server_error(exc, server, f"asking which instances of {doing} it holds") from None
    return {str(v) for hit in hits for v in (hit.get(_SOP_UID_TAG, {}).get("Value") or [])}


def _duplicates(answer, server: Server, doing: str) -> set[str]:
    """SOP Instance UIDs the STOW answer reports as already stored; raise on any other failure."""
    duplicates = set()
    for item in getattr(answer, "FailedSOPSequence", None) or []:
        sop_uid = str(getattr(item, "ReferencedSOPInstanceUID", ""))
        reason = int(getattr(item, "FailureReason", 0))
        if reason != _DUPLICATE_SOP:
            raise ServerError(f"{server.label}: {doing}: the server refused instance {sop_uid} (failure reason 0x{reason:04X})")
        duplicates.add(sop_uid)
    return duplicates


def _log(ledger: Path, server: Server, study_uid: str, sop_uid: str, path: Path, output: Path) -> None:
    line = {"target": server.url, "study_uid": study_uid, "sop_instance_uid": sop_uid, "file": path.relative_to(output).as_posix()}
    with open(ledger, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(line, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
