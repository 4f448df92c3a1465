"""How long the released-text scan takes as the batch grows, against the byte scanner's search.

Every released text (reasons, header-change names, summary, report values, clinical cells, audit
records) is scanned with the identifying strings of the whole batch before signing. The scan looks
up the spans a text's token boundaries allow in a table of written forms; the peer is the byte
scanner's way, every form searched in the whole text (a first version used one case-insensitive
regex alternation of every form, for bytes and text alike). Each patient brings a name, its parts, an MRN, a birth date and an input file name; each
item brings two texts (a reason and an output path). The peer also counts its false hits (an
unbounded birth date such as 19520317 inside a 2.25 UID of an output path), which the table's token
boundaries rule out. Prints medians of 3 runs and writes JSON under bench/out/.

    .venv/bin/python bench/released_text.py [--patients 100 1000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import time
from pathlib import Path

from clinrelease.verify.leaks import _compile, _find, phi_variants
from clinrelease.verify.released_text import TextGuard


def _batch(patients: int) -> tuple[list[str], list[str]]:
    rng = random.Random(0)
    phi, texts = [], []
    for n in range(patients):
        family = "".join(rng.choice(string.ascii_uppercase) for _ in range(7))
        given = "".join(rng.choice(string.ascii_uppercase) for _ in range(6))
        phi += [f"{family}^{given}", family, given, f"MRN{rng.randrange(10**8):08d}",
                f"19{rng.randrange(30, 99)}0{rng.randrange(1, 9)}1{rng.randrange(0, 9)}", f"in/{family}_{n}.dcm"]  # fmt: skip
        texts.append(f"PHI leak scan: {n % 7} occurrence(s) in the output bytes (name 1; the values are in the site's copy)")
        texts.append(f"data/P{n:012d}/2.25.{rng.randrange(10**30)}/2.25.{rng.randrange(10**30)}.dcm")
    return phi, texts


def _median(fn, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, nargs="+", default=[100, 1000])
    args = parser.parse_args()
    rows = []
    print(f"{'patients':>8} {'texts':>6} {'table s':>8} {'regex s':>8} {'ratio':>6} {'regex false hits':>16}")
    for patients in args.patients:
        phi, texts = _batch(patients)

        false_hits = []

        def table() -> None:
            guard = TextGuard(phi)
            assert not any(guard.leaks(t) for t in texts)

        def regex() -> None:
            patterns = _compile(phi_variants(phi), ("utf-8",), encoder_text=False)
            false_hits.append(sum(bool(_find(t.encode(), patterns, 0, 0, len(t.encode()))) for t in texts))

        ours, peer = _median(table), _median(regex)
        rows.append({"patients": patients, "texts": len(texts), "table_s": ours, "regex_s": peer, "regex_false_hits": false_hits[-1]})
        print(f"{patients:>8} {len(texts):>6} {ours:>8.3f} {peer:>8.3f} {peer / ours:>6.1f} {false_hits[-1]:>16}")
    out = Path(__file__).resolve().parent / "out"
    out.mkdir(exist_ok=True)
    (out / "released_text.json").write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
