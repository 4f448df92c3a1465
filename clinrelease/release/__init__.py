"""The release orchestrator: the only package that knows the order of the stages.

A release is many items plus the clinical tables. Each item goes through
``header de-id -> faces -> anonymize -> encode -> verify -> release or quarantine``; items may run in
a local process pool, on a Dask cluster, or in shards on a batch scheduler; one merge step then orders
the records, writes the clinical tables, ``summary.json``, the QA report, the manifest and the signed
audit log. The modules, in the order a run uses them:

- :mod:`~clinrelease.release.run`: a whole run (folders, key, items, backends, model disposal, merge).
- :mod:`~clinrelease.release.paths`: the release's folders (OUT, OUT.quarantine, OUT.work) and its key.
- :mod:`~clinrelease.release.backends`: where items run (serial, process pool, Dask) and shards.
- :mod:`~clinrelease.release.work`: the picklable item context and one item's scratch state.
- :mod:`~clinrelease.release.item`: one item's stages, in order; the header-only route.
- :mod:`~clinrelease.release.video`: one video's pixel stages and its verification pass.
- :mod:`~clinrelease.release.anonymizers`: the patient's and bystanders' anonymizers; the surrogate decision.
- :mod:`~clinrelease.release.visuals`: contact sheet and face embeddings from the verification pass.
- :mod:`~clinrelease.release.record`: the item record (:class:`ItemRecord`, :class:`Status`) and what a run did.
- :mod:`~clinrelease.release.merge`: the merge and signing; the next release swapped in for OUT.
- :mod:`~clinrelease.release.gallery`: release-level gallery attack and surrogate check.
- :mod:`~clinrelease.release.clinical_table`: the released clinical table.
- :mod:`~clinrelease.release.summary`: summary.json, audit records, the QA report's two copies.

The decision (which checks, at which limits, with which reasons) is :mod:`clinrelease.verify.decision`;
which route an object's pixels take is :mod:`clinrelease.dicom.sop_classes`.
"""

from clinrelease.release.anonymizers import build_anonymizers, measure_surrogate
from clinrelease.release.item import process_item
from clinrelease.release.merge import merge_release
from clinrelease.release.paths import RELEASE_NAMES, ReleasePaths, release_key_id
from clinrelease.release.record import ItemRecord, ReleaseSummary, Status, load_records, released_reasons
from clinrelease.release.run import ReleaseOptions, dispose_patient_models, run_release
from clinrelease.release.summary import REALISM_FIGURES, summary_figures
from clinrelease.release.video import endpoint_figures, patient_body
from clinrelease.release.work import ItemContext

__all__ = [
    "ItemContext",
    "ItemRecord",
    "REALISM_FIGURES",
    "RELEASE_NAMES",
    "ReleaseOptions",
    "ReleasePaths",
    "ReleaseSummary",
    "Status",
    "build_anonymizers",
    "dispose_patient_models",
    "endpoint_figures",
    "load_records",
    "measure_surrogate",
    "merge_release",
    "patient_body",
    "process_item",
    "release_key_id",
    "released_reasons",
    "run_release",
    "summary_figures",
]
