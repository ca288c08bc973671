"""The seed-averaging table scripts behind docs/results.md (scripts/evidence/)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

EVIDENCE = Path(__file__).resolve().parents[1] / "scripts" / "evidence"


def load_script(name: str):
    sys.path.insert(0, str(EVIDENCE))  # eval_seed_table imports seed_table from beside it
    try:
        spec = importlib.util.spec_from_file_location(name, EVIDENCE / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        return mod
    finally:
        sys.path.remove(str(EVIDENCE))


def run_main(mod, argv: list, capsys) -> dict:
    """The script's table as {row label: [cells]}."""
    old = sys.argv
    sys.argv = ["x", *argv]
    try:
        mod.main()
    finally:
        sys.argv = old
    rows = {}
    for line in capsys.readouterr().out.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] not in rows, f"row {cells[0]!r} printed twice"
        rows[cells[0]] = cells[1:]
    return rows


def eval_json(path: Path, records: list) -> None:
    path.mkdir(parents=True)
    (path / "eval.json").write_text(json.dumps({"meta": {}, "records": records}))


def rec(label: str, kind: str, steps, ppl: float, tv2: float) -> dict:
    return {"label": label, "kind": kind, "steps": steps,
            "metrics": {"gen_ppl": ppl, "ngram_tv_2": {"mean": tv2, "stderr": 0.01}}}


def test_eval_seed_table_groups_seeds_and_recipes(tmp_path, capsys):
    mod = load_script("eval_seed_table")
    a, b = tmp_path / "base" / "eval", tmp_path / "lr3" / "eval"
    data = [rec("data (held-out)", "data", None, 4.0, 0.02)]
    teacher = data + [rec("teacher", "teacher", 8, 30.0, 0.09),
                      rec("teacher", "teacher", 64, 18.0, 0.06)]
    eval_json(a / "teacher", teacher)
    for seed, (ppl, tv) in enumerate([(19.0, 0.07), (20.0, 0.08), (21.0, 0.06)]):
        # a student evaluated at a step count other than its k is not its row
        name = f"student_k8_s{seed}"
        eval_json(a / name, data + [rec(name, "student", 8, ppl, tv),
                                    rec(name, "student", 4, 99.0, 0.5)])
    eval_json(b / "teacher", teacher)  # a second recipe's directory reuses the teacher's
    eval_json(b / "student_k8_s0", data + [rec("student_k8_s0", "student", 8, 17.0, 0.05)])
    rows = run_main(mod, [str(a), str(b)], capsys)
    ppl, tv = rows["student k=8"][1], rows["student k=8"][6]  # [6]: TV n=2
    assert rows["student k=8"][0] == "0,1,2"
    assert ppl.startswith("20.000 +- 0.58")  # mean 20, sd 1, s.e. 1/sqrt(3)
    assert tv.startswith("0.0700 +- 0.0058")
    assert rows["student k=8 (lr3)"][0] == "0"
    assert rows["student k=8 (lr3)"][6] == "0.0500 +- 0.01"  # one seed: its own s.e.
    assert set(rows) == {"student k=8", "student k=8 (lr3)", "teacher, 8 steps",
                         "teacher, 64 steps", "data (held-out)"}


def row_json(path: Path, **metrics) -> None:
    full = {k: 0.0 for k, _, _ in load_script("seed_table").METRICS}
    full.update(metrics)
    path.write_text("log line\n" + json.dumps(full) + "\n")


@pytest.mark.parametrize("recipe", ["lr3e-4", "steps1500"])
def test_seed_table_keeps_recipes_apart(tmp_path, capsys, recipe):
    mod = load_script("seed_table")
    for seed, x in enumerate([0.10, 0.20, 0.30]):
        row_json(tmp_path / f"s{seed}_k8_p1.0.json", excess_nll_bits=x)
    row_json(tmp_path / f"s0_k8_p1.0_{recipe}.json", excess_nll_bits=-0.05, nll_se=0.01)
    row_json(tmp_path / "teacher_n64.json", excess_nll_bits=0.15, nll_se=0.02)
    row_json(tmp_path / "data.json", excess_nll_bits=0.0, nll_se=0.02)
    rows = run_main(mod, [str(tmp_path)], capsys)
    assert rows["student k=8 top_p=1.0"][:2] == ["0,1,2", "+0.2000 +- 0.058"]
    assert rows[f"student k=8 top_p=1.0 {recipe}"][:2] == ["0", "-0.0500 +- 0.01"]
    assert rows["teacher, 64 steps"][1] == "+0.1500 +- 0.02"
    assert "data (floor)" in rows
