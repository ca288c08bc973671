"""Seed-averaged table of the student rows written by strong_teacher_hmm.sh.

    python scripts/evidence/seed_table.py ROWS_DIR

Rows named s{SEED}_k{K}_p{TOP_P}[_RECIPE] are grouped by (K, TOP_P, RECIPE); each metric
is given as the mean over the seeds found, +- the standard error across seeds (sample
standard deviation / sqrt(seeds); with one seed, that row's own bootstrap s.e.). The
seed-to-seed spread is the one that says whether a recipe beats the teacher; each row's
own bootstrap s.e. (hmm_table.py) only says how well 2048 samples pin that one student
down. Teacher rows (teacher_n{STEPS}) and the data floors (data.json, data_b.json: two
exact samples of the same size) follow, unaveraged,
with each row's own bootstrap s.e. (the noise of its 2048 samples).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections import defaultdict
from pathlib import Path

METRICS = [("excess_nll_bits", "excess NLL (bits)", "+.4f"), ("gm", "GM", ".3g"),
           ("unigram_entropy", "entropy (nats)", ".4f"), ("reverse_ce_2", "rev CE n=2", ".4f"),
           ("reverse_ce_3", "rev CE n=3", ".4f"), ("ngram_tv_2", "TV n=2", ".4f"),
           ("ngram_tv_3", "TV n=3", ".4f")]
SE_KEY = {"excess_nll_bits": "nll_se"}  # every other metric's s.e. is METRIC_se
STUDENT = re.compile(r"^s(\d+)_k(\d+)_p([0-9.]+)(?:_(.+))?$")  # optional _RECIPE suffix
TEACHER = re.compile(r"^teacher_n(\d+)$")


def load(path: Path) -> dict:
    return json.loads(path.read_text().strip().splitlines()[-1])


def mean_se(xs: list) -> tuple:
    m = sum(xs) / len(xs)
    if len(xs) < 2:
        return m, float("nan")
    var = sum((x - m) ** 2 for x in xs) / (len(xs) - 1)
    return m, math.sqrt(var / len(xs))


def cell(m: float, se: float, fmt: str) -> str:
    return f"{m:{fmt}} +- {se:.2g}" if se == se else f"{m:{fmt}}"


def own_cells(r: dict) -> list:
    """A single row's metrics with its own bootstrap s.e. (sampling noise)."""
    return [cell(r[key], r.get(SE_KEY.get(key, key + "_se"), float("nan")), fmt)
            for key, _, fmt in METRICS]


def main() -> None:
    d = Path(sys.argv[1])
    groups = defaultdict(list)
    teachers = []
    for p in sorted(d.glob("*.json")):
        if m := STUDENT.match(p.stem):
            groups[(int(m[2]), m[3], m[4] or "")].append((int(m[1]), load(p)))
        elif m := TEACHER.match(p.stem):
            teachers.append((int(m[1]), load(p)))
    head = "| row | seeds | " + " | ".join(h for _, h, _ in METRICS) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (k, top_p, recipe), runs in sorted(groups.items()):
        seeds = ",".join(str(s) for s, _ in sorted(runs, key=lambda r: r[0]))
        cells = (own_cells(runs[0][1]) if len(runs) == 1 else  # one seed: its own s.e.
                 [cell(*mean_se([r[key] for _, r in runs]), fmt) for key, _, fmt in METRICS])
        name = f"student k={k} top_p={top_p}" + (f" {recipe}" if recipe else "")
        print(f"| {name} | {seeds} | " + " | ".join(cells) + " |")
    for steps, r in sorted(teachers):
        print(f"| teacher, {steps} steps | - | " + " | ".join(own_cells(r)) + " |")
    for name in ("data", "data_b"):
        if (d / f"{name}.json").exists():
            print(f"| {name} (floor) | - | " + " | ".join(own_cells(load(d / f"{name}.json")))
                  + " |")


if __name__ == "__main__":
    main()
