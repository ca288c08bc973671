"""Sanity table for the evaluation metrics: real-vs-real, one real row
repeated, and shuffled-token rows, scored by generative perplexity with
unigram entropy and by the gradient moment (and, on the HMM language, by the
exact NLL and the exact gradient moment with the true model as reference).

What it should show: repeating one likely real row gives a perplexity at or
below the data's and an unchanged per-row unigram entropy (neither metric sees
that every row is the same), while the gradient moment is far above the
real-vs-real value; shuffling tokens inside rows keeps the unigram entropy
exactly and is caught by perplexity and the gradient moment alike.

    PYTHONPATH=. python python/eval_sanity.py --data hmm --out sanity.md
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import torch

from dmmd_ext.data import load_dataset
from dmmd_ext.evaluation.perplexity import per_sample_nll
from dmmd_ext.evaluation.reference_model import (ReferenceConfig, load_reference, save_reference,
                                                 train_reference, validation_nll)
from dmmd_ext.evaluation.report import markdown_table
from dmmd_ext.evaluation.suite import EvalSuite


def sample_sets(suite: EvalSuite, reference, seed: int) -> dict[str, torch.Tensor]:
    real = suite.heldout
    n = real.shape[0]
    nll = per_sample_nll(reference.token_nll, real, batch_size=256)
    g = torch.Generator().manual_seed(seed)
    best = int(nll.argmin())
    rand = int(torch.randint(0, n, (1,), generator=g))
    perms = torch.argsort(torch.rand(n, real.shape[1], generator=g), dim=1)
    return {
        "real (held-out)": real,
        "repeated row: most likely real row": real[best].expand(n, -1).clone(),
        "repeated row: random real row": real[rand].expand(n, -1).clone(),
        "shuffled tokens within rows": torch.gather(real, 1, perms),
    }


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        cpu = f"{names[0]} ({len(names)} logical CPUs)" if names else cpu
    except OSError:
        pass
    return f"{platform.system()} {platform.machine()}, {cpu}, torch {torch.__version__}, threads {torch.get_num_threads()}"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="hmm")
    p.add_argument("--data-arg", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--reference-steps", type=int, default=1500)
    p.add_argument("--preset", default="tiny")
    p.add_argument("--half-batch", type=int, default=16)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--reference", help="load this AR reference instead of training one")
    p.add_argument("--save-reference", help="save the trained reference here")
    p.add_argument("--out", help="write the markdown table here")
    p.add_argument("--json", help="write the records here")
    args = p.parse_args(argv)
    kwargs = {k: json.loads(v) if v[:1].isdigit() else v for k, v in (a.split("=", 1) for a in args.data_arg)}
    t0 = time.time()
    dataset = load_dataset(args.data, **kwargs)
    if args.reference:
        reference = load_reference(args.reference, device=args.device)
        rec = {"val_nll": validation_nll(reference, dataset.val, 64, 16), "seconds": 0.0}
    else:
        reference, rec = train_reference(dataset, ReferenceConfig(preset=args.preset, steps=args.reference_steps,
                                                                  seed=args.seed, device=args.device))
        if args.save_reference:
            save_reference(reference, args.save_reference, rec)
    print(f"reference: val NLL {rec['val_nll']:.4f} nats/token after {args.reference_steps} steps "
          f"({rec['seconds']:.0f} s)")
    suite = EvalSuite(dataset.train, dataset.val, reference=reference,
                      true_model=getattr(dataset, "hmm", None), half_batch=args.half_batch, device=args.device)
    records = []
    for label, rows in sample_sets(suite, reference, args.seed).items():
        records.append({"label": label, "kind": "data" if label.startswith("real") else "sanity",
                        "steps": None, "n_samples": int(rows.shape[0]),
                        "metrics": suite.measure(rows, seed=args.seed)})
    table = markdown_table(records)
    info = (f"data: {dataset.describe()['name']} ({dataset.train.shape[0]} train / {dataset.val.shape[0]} val rows "
            f"of length {dataset.seq_len}, K = {dataset.vocab_size}); reference: ARReference '{args.preset}', "
            f"{args.reference_steps} steps, val NLL {rec['val_nll']:.4f}; gradient-moment data side: "
            f"{suite.gm_data.shape[0]} other held-out rows, half-batch {args.half_batch}.\n"
            f"machine: {machine()}; total {time.time() - t0:.0f} s")
    if suite.true_model is not None:
        ent = dataset.info.get("entropy_rate_bits")
        info += f"\ntrue per-token entropy: {ent * 0.6931471805599453:.4f} nats" if ent is not None else ""
    print(table + "\n" + info)
    if args.out:
        with open(args.out, "w") as f:
            f.write(table + "\n" + info + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"records": records, "info": info}, f, indent=2)
    return records


if __name__ == "__main__":
    main()
