"""The release's own texts pass the same leak scan as its DICOM bytes, before anything is signed.

The QA report, ``summary.json``, the released audit records and the clinical tables are built from
item records, reasons, header changes and table cells. Every string that goes into them comes from
here: :func:`released_strings` walks a document's keys and string values (the report is rendered
from the same values and fixed wording; keys are field names), and :class:`TextGuard` scans each with the identifying
strings of every item and of the clinical table (the leak scan's own written forms, matched on token
boundaries: :func:`clinrelease.verify.leaks.scan_text`). A reason that quotes one is replaced by
:data:`WITHHELD_REASON`; whatever is still found when the documents are complete stops the release
before signing, named by document and kind, never by value.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from clinrelease.errors import VerificationError
from clinrelease.verify.leaks import Leak, phi_variants, text_scanner

#: what the release shows instead of a reason that quoted identifying data
WITHHELD_REASON = "reason withheld: it quoted identifying data (the site's quarantine copy has it)"


def released_strings(document: Any) -> Iterator[str]:
    """Every string value of a JSON-like document (dataclasses by their fields), depth first.

    Mapping keys are the release's own field names, figure names and the profile's column names,
    never data: a patient named Pool must not stop a release whose summary has a ``pool`` field.
    """
    # a stack, not recursion: a release's summary holds hundreds of thousands of strings, and a
    # generator per nesting level cost more than the scan of them
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            yield node
        elif isinstance(node, (list, tuple)):  # before Mapping, whose isinstance is an ABC's check
            stack.extend(reversed(node))
        elif isinstance(node, Mapping):
            stack.extend(reversed(list(node.values())))
        elif isinstance(node, (set, frozenset)):
            stack.extend(reversed(list(node)))
        elif dataclasses.is_dataclass(node) and not isinstance(node, type):
            stack.extend(reversed([getattr(node, f.name) for f in dataclasses.fields(node)]))


@dataclass
class TextGuard:
    """The leak scan over released text, with the identifying strings of the whole batch."""

    phi: Iterable[str]
    _scan: Any = field(init=False, repr=False)
    #: a release's texts repeat (attribute names, actions, figure names): each is scanned once
    _seen: dict[str, list[Leak]] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.phi = sorted({s.strip() for s in self.phi if s and s.strip()})
        self._scan = text_scanner(self.phi)

    def leaks(self, text: str) -> list[Leak]:
        """Occurrences of an identifying string in ``text``."""
        found = self._seen.get(text)
        if found is None:
            found = self._seen[text] = self._scan(text)
        return found

    def clean(self, texts: Iterable[str], replacement: str = WITHHELD_REASON) -> list[str]:
        """``texts`` with every one that quotes an identifying string replaced by ``replacement``."""
        return [replacement if self.leaks(t) else t for t in texts]

    def check(self, documents: Mapping[str, Any]) -> None:
        """Refuse (before signing) when any released document still carries an identifying string.

        Raises
        ------
        VerificationError
            Naming each document and the kinds found, never the values.
        """
        found: dict[str, dict[str, int]] = {}
        for name, document in documents.items():
            # counted in C, then each distinct text scanned once: the header-change rows of a
            # batch repeat the same few hundred strings
            for text, times in Counter(released_strings(document)).items():
                for leak in self.leaks(text):
                    kinds = found.setdefault(name, {})
                    kinds[leak.kind] = kinds.get(leak.kind, 0) + times
        if found:
            listed = "; ".join(f"{name}: {', '.join(f'{k} {n}' for k, n in sorted(kinds.items()))}" for name, kinds in sorted(found.items()))
            raise VerificationError(
                f"refusing to sign: released text would carry identifying strings ({listed}); "
                "nothing was signed, and the values are in the site's work folder only"
            )


def batch_identifying_strings(records: Iterable[Mapping[str, Any]], extra: Iterable[str] = ()) -> list[str]:
    """The identifying strings of every item (header values, metadata rows, container tags, the
    input's file name) and ``extra`` (the clinical table's raw IDs)."""
    strings: set[str] = set(extra)
    for record in records:
        strings.update(record.get("identifying_strings") or ())
        name = str(record.get("input") or "")
        # the whole relative path and file name: a reason quoting a path is withheld
        strings.update(s for s in (name, name.rsplit("/", 1)[-1]) if s)
    return sorted(s for s in strings if phi_variants([s]))
