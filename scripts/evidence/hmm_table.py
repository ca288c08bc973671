"""Markdown table of the HMM evidence rows written by strong_teacher_hmm.sh.

    python scripts/evidence/hmm_table.py ROWS_DIR [NAME ...]

ROWS_DIR/NAME.json: one JSON line of python/eval_hmm_sampler.py (or hmm_data_floor.py);
ROWS_DIR/NAME.wall: the wall seconds of that evaluation. Names default to every row,
sorted. The label column is NAME; the entropy column also gives the relative difference
from the data row (ROWS_DIR/data.json) when it exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def _f(v, se, fmt):
    return f"{v:{fmt}} +- {se:.2g}" if se == se else f"{v:{fmt}}"


def main() -> None:
    d = Path(sys.argv[1])
    names = sys.argv[2:] or sorted(p.stem for p in d.glob("*.json"))
    data = json.loads((d / "data.json").read_text()) if (d / "data.json").exists() else None
    head = ("| row | steps | excess NLL (bits) | GM (true model) | unigram entropy (nats) | "
            "vs data | reverse CE n=2 (bits) | reverse CE n=3 (bits) | TV n=2 | TV n=3 | eval wall s |")
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name in names:
        p = d / f"{name}.json"
        if not p.exists():
            continue
        r = json.loads(p.read_text().strip().splitlines()[-1])
        wall = (d / f"{name}.wall").read_text().strip() if (d / f"{name}.wall").exists() else "-"
        rel = (f"{100 * (r['unigram_entropy'] / data['unigram_entropy'] - 1):+.2f}%"
               if data else "-")
        cells = [name, str(r.get("steps", "-")),
                 _f(r["excess_nll_bits"], r["nll_se"], "+.4f"),
                 _f(r["gm"], r["gm_se"], ".3g"),
                 _f(r["unigram_entropy"], r["unigram_entropy_se"], ".4f"), rel,
                 _f(r["reverse_ce_2"], r["reverse_ce_2_se"], ".4f"),
                 _f(r["reverse_ce_3"], r["reverse_ce_3_se"], ".4f"),
                 _f(r["ngram_tv_2"], r["ngram_tv_2_se"], ".4f"),
                 _f(r["ngram_tv_3"], r["ngram_tv_3_se"], ".4f"), wall]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
