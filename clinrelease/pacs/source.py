"""Select studies on a DICOMweb server (QIDO-RS) and stage them for a release (WADO-RS).

A study is staged instance by instance (one instance in memory at a time) into a partial folder
and moved into ``STAGING/studies/`` only when every instance the server lists for it has arrived,
so the release never sees part of a study. Staged folder and file names are digests of the UIDs
(the original UIDs would otherwise reach the release's report as input names); ``index.json``
beside them maps them back for the site. A re-run finds complete studies and does not fetch them
again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from clinrelease.errors import ConfigError, ServerError
from clinrelease.files import write_json_atomic
from clinrelease.pacs.servers import Server, connect, server_error

#: QIDO-RS search keys ``--query`` accepts (DICOM keywords; dates as YYYYMMDD or YYYYMMDD-YYYYMMDD)
QUERY_KEYS = ("PatientID", "PatientName", "StudyDate", "AccessionNumber", "ModalitiesInStudy", "StudyDescription")
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_STUDY_UID_TAG = "0020000D"
_SERIES_UID_TAG = "0020000E"
_SOP_UID_TAG = "00080018"


@dataclass(frozen=True)
class StagedStudy:
    """One complete study in staging."""

    study_uid: str
    folder: Path
    instances: int
    fetched: bool  # False when a previous run had staged it already


def parse_query(pairs: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` pairs of ``--query`` as QIDO-RS search filters."""
    query: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not value:
            raise ConfigError(f"--query {pair!r}: write it as KEY=VALUE, e.g. PatientID=MRN123 or StudyDate=20240101-20241231")
        if key not in QUERY_KEYS:
            raise ConfigError(f"--query {pair!r}: {key} is not one of {', '.join(QUERY_KEYS)}")
        query[key] = value
    return query


def select_studies(server: Server, study_uids: list[str], query: dict[str, str]) -> list[str]:
    """The Study Instance UIDs to release: those named, plus every study the query finds."""
    if not study_uids and not query:
        raise ConfigError("name the studies to release: --study UID (repeatable) or --query KEY=VALUE")
    for uid in study_uids:
        if not _UID.match(uid):
            raise ConfigError(f"--study {uid!r} is not a DICOM UID")
    selected = list(dict.fromkeys(study_uids))
    if query:
        client = connect(server)
        shown = " ".join(f"{k}={v}" for k, v in query.items())
        try:
            found = client.search_for_studies(search_filters=query, fields=[_STUDY_UID_TAG], get_remaining=True)
        except Exception as exc:  # every requests/dicomweb failure becomes one clear message
            raise server_error(exc, server, f"searching for studies ({shown})") from None
        for hit in found:
            uid = _value(hit, _STUDY_UID_TAG)
            if uid and uid not in selected:
                selected.append(uid)
        if not found and not study_uids:
            raise ServerError(f"{server.label}: no study matches {shown}")
    return selected


def study_folder_name(study_uid: str) -> str:
    return "study-" + hashlib.sha256(study_uid.encode()).hexdigest()[:16]


def stage_study(
    server: Server,
    study_uid: str,
    staging: Path,
    on_instance: Callable[[int, int], None] | None = None,
) -> StagedStudy:
    """Fetch every instance of ``study_uid`` into ``staging/studies/`` (all of them, or none)."""
    done = staging / "studies" / study_folder_name(study_uid)
    if (done / ".complete").is_file():
        count = json.loads((done / ".complete").read_text(encoding="utf-8"))["instances"]
        return StagedStudy(study_uid, done, count, fetched=False)
    partial = staging / "partial" / done.name
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    client = connect(server)
    doing = f"study {study_uid}"
    try:
        listed = client.search_for_instances(
            study_instance_uid=study_uid, fields=[_SERIES_UID_TAG, _SOP_UID_TAG], get_remaining=True
        )
    except Exception as exc:
        shutil.rmtree(partial, ignore_errors=True)
        raise server_error(exc, server, f"listing the instances of {doing}") from None
    instances = [(_value(hit, _SERIES_UID_TAG), _value(hit, _SOP_UID_TAG)) for hit in listed]
    if not instances:
        shutil.rmtree(partial, ignore_errors=True)
        raise ServerError(f"{server.label}: {doing} has no instances (or does not exist on this server)")
    for n, (series_uid, sop_uid) in enumerate(instances, 1):
        try:
            ds = client.retrieve_instance(study_uid, series_uid, sop_uid, media_types=(("application/dicom", "*"),))
            if str(ds.SOPInstanceUID) != sop_uid:
                raise ValueError(f"asked for instance {sop_uid}, got {ds.SOPInstanceUID}")
            target = partial / (hashlib.sha256(sop_uid.encode()).hexdigest()[:16] + ".dcm")
            ds.save_as(target, enforce_file_format=False)
        except Exception as exc:
            shutil.rmtree(partial, ignore_errors=True)
            raise server_error(exc, server, f"{doing}, instance {n} of {len(instances)}; nothing of it was staged") from None
        if on_instance:
            on_instance(n, len(instances))
    (partial / ".complete").write_text(json.dumps({"study_uid": study_uid, "instances": len(instances)}) + "\n", encoding="utf-8")
    done.parent.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(done, ignore_errors=True)
    os.replace(partial, done)
    _index(staging, study_uid, done.name)
    return StagedStudy(study_uid, done, len(instances), fetched=True)


def _index(staging: Path, study_uid: str, folder: str) -> None:
    path = staging / "index.json"
    index = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    index[folder] = study_uid
    write_json_atomic(path, index)


def _value(hit: dict, tag: str) -> str | None:
    values = hit.get(tag, {}).get("Value") or []
    return str(values[0]) if values else None
