"""Seed-averaged table of `dmmd eval` outputs (scripts/evidence/shakespeare.sh).

    python scripts/evidence/eval_seed_table.py EVAL_DIR [EVAL_DIR ...]

EVAL_DIR holds one `dmmd eval` output directory per run (NAME/eval.json). Student records
labelled student_k{K}_s{SEED} at K steps are grouped by K (and by EVAL_DIR: the students
of a second directory, another recipe's, are named by its run directory); each metric is
the mean over the seeds found +- the standard error across seeds (sample standard
deviation / sqrt(seeds); with one seed, that run's own s.e.): the spread that says
whether a recipe beats the teacher.
Teacher records (one row per step count) and the data rows follow with their own +- (the
suite's per-row standard error: sampling noise of one sample set). The data rows are taken
from the teacher's evaluation (every evaluation of one dataset and seed has the same ones).
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_table import cell, mean_se  # noqa: E402  (same directory)

METRICS = [("gen_ppl", "gen. PPL", ".3f"), ("unigram_entropy", "entropy (nats)", ".4f"),
           ("gradient_moment", "GM", ".3g"), ("reverse_ce_2", "rev CE n=2", ".4f"),
           ("reverse_ce_3", "rev CE n=3", ".4f"), ("ngram_tv_2", "TV n=2", ".4f"),
           ("ngram_tv_3", "TV n=3", ".4f")]
STUDENT = re.compile(r"^student_k(\d+)_s(\d+)$")


def value(m) -> tuple:
    """(mean, s.e.) of a metric entry: a dict with mean/stderr, or a bare number."""
    if isinstance(m, dict):
        se = m.get("stderr")
        return float(m["mean"]), float("nan") if se is None else float(se)
    return float(m), float("nan")


def own_cells(rec: dict) -> list:
    return [cell(*value(rec["metrics"][key]), fmt) if key in rec["metrics"] else ""
            for key, _, fmt in METRICS]


def recipe_name(d: Path, first: Path) -> str:
    """'' for the first directory, else its run directory's name (runs/NAME/eval)."""
    return "" if d == first else f" ({d.parent.name if d.name == 'eval' else d.name})"


def main() -> None:
    dirs = [Path(a) for a in sys.argv[1:]]
    groups, teachers, data = defaultdict(list), {}, {}
    for d in dirs:
        for p in sorted(d.glob("*/eval.json")):
            for rec in json.loads(p.read_text())["records"]:
                if rec["kind"] == "data":
                    data.setdefault(rec["label"], rec)
                elif (m := STUDENT.match(rec["label"])) and rec["steps"] == int(m[1]):
                    groups[(recipe_name(d, dirs[0]), int(m[1]))].append((int(m[2]), rec))
                elif rec["kind"] == "teacher":
                    teachers.setdefault((rec["label"], rec["steps"]), rec)
    head = "| row | seeds | " + " | ".join(h for _, h, _ in METRICS) + " |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (recipe, k), runs in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
        seeds = ",".join(str(s) for s, _ in sorted(runs, key=lambda r: r[0]))
        cells = (own_cells(runs[0][1]) if len(runs) == 1 else  # one seed: its own s.e.
                 [cell(*mean_se([value(r["metrics"][key])[0] for _, r in runs]), fmt)
                  if all(key in r["metrics"] for _, r in runs) else ""
                  for key, _, fmt in METRICS])
        print(f"| student k={k}{recipe} | {seeds} | " + " | ".join(cells) + " |")
    for (label, steps), rec in sorted(teachers.items()):
        print(f"| {label}, {steps} steps | - | " + " | ".join(own_cells(rec)) + " |")
    for label, rec in data.items():
        print(f"| {label} | - | " + " | ".join(own_cells(rec)) + " |")


if __name__ == "__main__":
    main()
