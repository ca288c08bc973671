"""`dmmd eval` end to end on the toy HMM (random-weight teacher checkpoint),
`dmmd train-reference`, and the markdown/plot writers."""

import builtins
import json

import pytest
import torch

from dmmd_ext.evaluation.report import main, markdown_table, plot_metrics


pytestmark = pytest.mark.usefixtures("one_thread")


DATA_ARGS = ["--data", "hmm", "--data-arg", "preset=toy", "--data-arg", "n_train=2000",
             "--data-arg", "n_val=512"]

RECORDS = [
    {"label": "data (held-out)", "kind": "data", "steps": None, "n_samples": 10,
     "metrics": {"gradient_moment": {"mean": 0.001, "stderr": 0.002, "n": 5}, "gen_ppl": 3.0}},
    {"label": "teacher", "kind": "teacher", "steps": 4, "n_samples": 10,
     "metrics": {"gradient_moment": {"mean": 0.5, "stderr": 0.01, "n": 5}, "gen_ppl": 3.5}},
    {"label": "student", "kind": "student", "steps": 4, "n_samples": 10,
     "metrics": {"gradient_moment": {"mean": 0.2, "stderr": 0.01, "n": 5}, "gen_ppl": 3.2}},
]


def teacher_checkpoint(path, data=None):
    from dmmd_ext.checkpoint import save_checkpoint
    from dmmd_ext.models.transformer import Transformer, preset_config
    from dmmd_ext.processes import make_process

    torch.manual_seed(0)
    cfg = preset_config("tiny", vocab_in=5, vocab_out=4, max_len=6)
    process = make_process("masked", 4)
    config = {"model": {"arch": "transformer", **cfg.to_dict()}, "process": process.to_dict(),
              "kind": "teacher", **(data or {"data": {"name": "hmm-toy"}})}
    return save_checkpoint(path, Transformer(cfg).state_dict(), config, step=0)


def test_markdown_table_orders_rows_and_formats_errors():
    table = markdown_table(RECORDS).splitlines()
    assert table[0].startswith("| model | steps | n | gen. perplexity | gradient moment |")
    assert table[2].startswith("| data (held-out) | - |")  # the baseline comes first
    assert "0.5 ± 0.01" in table[4] and table[3].startswith("| student | 4 |")


def test_plot_written_and_clear_message_without_matplotlib(tmp_path, monkeypatch, capsys):
    png = plot_metrics(RECORDS, tmp_path / "m.png")
    assert png is not None and png.stat().st_size > 1000
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError("no matplotlib")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert plot_metrics(RECORDS, tmp_path / "n.png") is None
    assert "matplotlib is not installed" in capsys.readouterr().out
    assert not (tmp_path / "n.png").exists()


def test_eval_command_end_to_end(tmp_path):
    ck = teacher_checkpoint(tmp_path / "teacher")
    ref = tmp_path / "ref.safetensors"
    rec = main(["train-reference", "--data", "hmm", "--hmm-preset", "toy", "--n-train", "2000",
                "--steps", "40", "--batch-size", "32", "--device", "cpu", "--log-every", "0", "--out", str(ref)])
    assert ref.is_file() and rec["val_nll"] < rec["train_losses"][0]
    out = tmp_path / "eval"
    # dataset taken from the checkpoint's config ("hmm-toy"), sizes overridden by --data-arg
    records = main(["eval", str(ck), "--steps", "1", "8", "--n-samples", "128", "--half-batch", "16",
                    "--reference", str(ref), "--device", "cpu", "--out", str(out),
                    "--data-arg", "n_train=2000", "--data-arg", "n_val=512"])
    saved = json.loads((out / "eval.json").read_text())
    assert [r["steps"] for r in saved["records"]] == [None, None, 1, 8]
    assert [r["kind"] for r in saved["records"]] == ["data", "data", "teacher", "teacher"]
    assert saved["records"][1]["label"] == "data (train rows)"
    for r in records:
        m = r["metrics"]
        assert {"gen_ppl", "nll", "unigram_entropy", "gradient_moment", "true_nll",
                "true_gradient_moment"} <= set(m)
    data, untrained = records[0]["metrics"], records[3]["metrics"]
    # an untrained teacher is far from the data under the exact model
    assert untrained["true_gradient_moment"]["mean"] > data["true_gradient_moment"]["mean"] + \
        4 * untrained["true_gradient_moment"]["stderr"]
    assert untrained["true_nll"]["mean"] > data["true_nll"]["mean"]
    assert "| teacher | 8 | 128 |" in (out / "eval.md").read_text()
    assert (out / "metrics.png").is_file()
    with pytest.raises(ValueError, match="vocab_size=4"):  # the checkpoint and the data disagree
        main(["eval", str(ck), "--steps", "1", "--reference", str(ref), "--data", "hmm",
              "--data-arg", "preset=random", "--data-arg", "n_train=100", "--out", str(tmp_path / "x")])


def test_eval_reports_ngram_metrics_and_like_with_like_teacher_rows(tmp_path):
    ck = teacher_checkpoint(tmp_path / "teacher")
    out = tmp_path / "eval"
    records = main(["eval", str(ck), "--steps", "2", "--n-samples", "64", "--half-batch", "16",
                    "--no-reference", "--no-plots", "--device", "cpu", "--out", str(out),
                    "--teacher-soft-top-p", "0.8", "--teacher-delta", "3",
                    "--teacher-temperature", "0.9", *DATA_ARGS])
    labels = [r["label"] for r in records]
    assert labels == ["data (held-out)", "data (train rows)", "teacher",
                      "teacher (soft top-p 0.8, delta 3, tau 0.9)"]
    for r in records:
        assert {"reverse_ce_2", "reverse_ce_3", "ngram_tv_2", "ngram_tv_3"} <= set(r["metrics"])
    meta = json.loads((out / "eval.json").read_text())["meta"]
    assert meta["ngram_reference"] == "exact" and meta["ngram_orders"] == [2, 3]
    assert meta["teacher_sampling"] == {"soft_top_p": 0.8, "delta": 3.0, "temperature": 0.9}
    # a random-weight teacher is far from the data; the held-out row is the floor
    data, teacher = records[0]["metrics"], records[2]["metrics"]
    assert teacher["ngram_tv_2"]["mean"] > data["ngram_tv_2"]["mean"] + 4 * teacher["ngram_tv_2"]["stderr"]
    assert "n-gram TV n=3" in (out / "eval.md").read_text()
    with pytest.raises(ValueError, match="--teacher-soft-top-p"):
        main(["eval", str(ck), "--steps", "2", "--no-reference", "--teacher-soft-top-p", "1.5",
              *DATA_ARGS, "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="--teacher-temperature"):
        main(["eval", str(ck), "--steps", "2", "--no-reference", "--teacher-temperature", "0",
              *DATA_ARGS, "--out", str(tmp_path / "o")])


def test_eval_needs_a_reference_choice(tmp_path):
    ck = teacher_checkpoint(tmp_path / "teacher")
    with pytest.raises(ValueError, match="--reference"):
        main(["eval", str(ck), "--steps", "1", *DATA_ARGS, "--out", str(tmp_path / "o")])
    with pytest.raises(ValueError, match="--labels"):
        main(["eval", str(ck), "--steps", "1", "--labels", "a", "b", "--no-reference",
              "--out", str(tmp_path / "o")])


def test_registered_with_the_dmmd_command_and_reads_data_args(tmp_path):
    from dmmd_ext.cli import build_parser
    from dmmd_ext.cli import main as dmmd_main

    _, cmds = build_parser()
    assert {"eval", "train-reference"} <= set(cmds)
    run = tmp_path / "run"
    # what `dmmd train-teacher` records: the data flags, rebuilt by the same mapping
    teacher_checkpoint(run / "checkpoint", {"data_args": {
        "data": "hmm", "hmm_preset": "toy", "n_train": 1000, "seq_len": None, "data_path": None,
        "data_seed": 0}})
    assert dmmd_main(["eval", str(run), "--steps", "2", "--n-samples", "64", "--half-batch", "16",
                      "--no-reference", "--no-plots", "--device", "cpu"]) == 0
    saved = json.loads((run / "eval" / "eval.json").read_text())
    assert saved["meta"]["data"]["name"] == "hmm-toy" and saved["meta"]["data"]["train_sequences"] == 1000
    assert saved["records"][2]["label"] == "run"
    assert "true_gradient_moment" in saved["records"][2]["metrics"]
    assert "gen_ppl" not in saved["records"][2]["metrics"]  # --no-reference


def test_digits_suite_has_a_frechet_floor():
    from dmmd_ext.data import load_dataset
    from dmmd_ext.evaluation.report import build_suite

    ds = load_dataset("digits")
    suite = build_suite(ds)
    base = suite.baseline()
    assert suite.classifier is not None and suite.true_model is None
    g = torch.Generator().manual_seed(0)
    noise = torch.randint(0, 17, (suite.heldout.shape[0], 64), generator=g)
    assert 0 < base["frechet"] < suite.measure(noise)["frechet"] / 3


def test_eval_rejects_a_reference_built_for_other_data(tmp_path):
    from dmmd_ext.evaluation.reference_model import ARReference, save_reference

    ck = teacher_checkpoint(tmp_path / "teacher")  # K = 4, L = 6
    ref = save_reference(ARReference.build(vocab_size=5, seq_len=6), tmp_path / "ref.safetensors")
    with pytest.raises(ValueError, match="--reference .*vocab_size=5"):
        main(["eval", str(ck), "--steps", "1", "--reference", str(ref), *DATA_ARGS,
              "--out", str(tmp_path / "o")])
