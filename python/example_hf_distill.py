"""Distill a Hugging Face masked LM end to end, offline and tiny.

Builds a small BPE tokenizer and a randomly initialized BERT in --work-dir (stand-ins
for a model you already have: pass --model-dir to use yours, with --corpus a text
file), tokenizes the corpus into a raw uint16 train.bin, trains the BERT as a
masked-diffusion teacher, distills a k-step D-MMD student and prints decoded samples
of both at k steps. Needs the [hf] extra (transformers, tokenizers).

    PYTHONPATH=. python python/example_hf_distill.py [--teacher-steps 200] [--k 4]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import torch

from dmmd_ext.data import load_dataset
from dmmd_ext.distill import DistillConfig, distill, load_student, sample_many
from dmmd_ext.models.hf import load_hf_denoiser
from dmmd_ext.processes import make_process
from dmmd_ext.training import TrainConfig, train_teacher

SENTENCES = ("the cat sat on the mat. the dog sat on the log. a bird sang in the tree. "
             "the sun rose over the hill and the cat ran to the dog. ")


def make_tiny_bert(out: Path, text: str, vocab: int = 160) -> None:
    """A BPE tokenizer trained on text and a random 2-layer BERT, saved in out."""
    import transformers
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="[UNK]"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator([text], trainers.BpeTrainer(
        vocab_size=vocab, special_tokens=["[PAD]", "[UNK]", "[MASK]"]))
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="[PAD]",
                                               unk_token="[UNK]", mask_token="[MASK]")
    cfg = transformers.BertConfig(vocab_size=len(tok), hidden_size=64, num_hidden_layers=2,
                                  num_attention_heads=4, intermediate_size=128,
                                  max_position_embeddings=128)
    transformers.BertForMaskedLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)


def tokenize_to_bin(model_dir: Path, text: str, out: Path) -> int:
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
    ids = np.asarray(tok(text, add_special_tokens=False)["input_ids"])
    if ids.max() >= 2 ** 16:
        raise SystemExit(f"{model_dir}: token ids above 65535 need a uint32 .bin")
    ids.astype(np.uint16).tofile(out)
    return len(tok)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work-dir", default=None, help="default: a temporary directory")
    ap.add_argument("--model-dir", default=None, help="your masked LM (default: a tiny random BERT)")
    ap.add_argument("--corpus", default=None, help="a text file (default: a few sentences)")
    ap.add_argument("--seq-len", type=int, default=32)
    ap.add_argument("--teacher-steps", type=int, default=200)
    ap.add_argument("--distill-steps", type=int, default=100)
    ap.add_argument("--k", type=int, default=4)
    a = ap.parse_args()
    work = Path(a.work_dir or tempfile.mkdtemp(prefix="dmmd-hf-"))
    work.mkdir(parents=True, exist_ok=True)
    text = Path(a.corpus).read_text() if a.corpus else SENTENCES * 200
    torch.manual_seed(0)
    model_dir = Path(a.model_dir) if a.model_dir else work / "bert"
    if a.model_dir is None:
        make_tiny_bert(model_dir, text)
    K = tokenize_to_bin(model_dir, text, work / "train.bin")
    ds = load_dataset("tokens", path=str(work / "train.bin"), dtype="uint16", seq_len=a.seq_len,
                      vocab_size=K, tokenizer=str(model_dir), val_sequences=32)
    proc = make_process("masked", K)
    teacher = load_hf_denoiser(model_dir, vocab_size=K)
    res = train_teacher(teacher, proc, ds, TrainConfig(
        steps=a.teacher_steps, batch_size=32, lr=1e-3, warmup=20, eval_every=a.teacher_steps,
        eval_batches=1, save_every=0, device="cpu"), work / "teacher", resume=False)
    print(f"teacher: validation NELBO {res['val_nelbo_bpt']:.3f} bits/token")
    distill(teacher.eval(), proc, ds, DistillConfig(
        k=a.k, steps=a.distill_steps, batch_size=32, lr=1e-4, top_p=0.9, save_every=0,
        device="cpu"), work / f"student-k{a.k}", resume=False)
    student, proc, k, _ = load_student(work / f"student-k{a.k}" / "checkpoint")
    for name, model in (("teacher", teacher), ("student", student)):
        x = sample_many(model, proc, k, 3, ds.seq_len, seed=1)
        print(f"\n{name}, {k} steps:")
        for row in x:
            print("  ", repr(ds.decode(row)))
    print(f"\nrun directories under {work}")


if __name__ == "__main__":
    main()
