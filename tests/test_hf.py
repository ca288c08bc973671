"""Hugging Face models as teachers and students (models.hf), built offline: tiny
randomly initialized BERT, ModernBERT and GPT-2 configs saved with save_pretrained
into temporary directories, a BPE tokenizer trained here, a corpus tokenized with
it. Through teacher training, distillation, sampling and eval, from Python and
from the CLI; and `dmmd eval --hf-reference` on re-tokenized and same-tokenizer data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

transformers = pytest.importorskip(
    "transformers", reason="the Hugging Face adapter needs the optional `transformers` "
    "(pip install 'dmmd_ext[hf]')")
pytest.importorskip("tokenizers", reason="the tests build a tokenizer with `tokenizers`")

from dmmd_ext import cli  # noqa: E402
from dmmd_ext.checkpoint import load_model  # noqa: E402
from dmmd_ext.data import load_dataset  # noqa: E402
from dmmd_ext.distill import DistillConfig, distill, load_student, sample_many  # noqa: E402
from dmmd_ext.models.hf import HFDenoiser, load_hf_denoiser  # noqa: E402
from dmmd_ext.models.noise import NoiseInput  # noqa: E402
from dmmd_ext.models.registry import build_model, model_spec  # noqa: E402
from dmmd_ext.processes import make_process  # noqa: E402
from dmmd_ext.training import TrainConfig, train_teacher  # noqa: E402

TEXT = ("the cat sat on the mat and the dog sat on the log; a bird sang in the tree while "
        "the sun rose over the hill. ") * 40
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<|endoftext|>"]


def _tokenizer(mask: bool):
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, trainers

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator([TEXT], trainers.BpeTrainer(vocab_size=120, special_tokens=SPECIALS))
    kw = dict(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]",
              bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    if mask:
        kw.update(mask_token="[MASK]", cls_token="[CLS]", sep_token="[SEP]")
    return transformers.PreTrainedTokenizerFast(**kw)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    root = tmp_path_factory.mktemp("hf")
    torch.manual_seed(0)
    tok = _tokenizer(mask=True)
    V = len(tok)
    small = dict(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=64, max_position_embeddings=64)
    bert = transformers.BertForMaskedLM(transformers.BertConfig(vocab_size=V, **small))
    bert.save_pretrained(root / "bert")
    tok.save_pretrained(root / "bert")
    mb_cfg = transformers.ModernBertConfig(vocab_size=V, pad_token_id=0, bos_token_id=2,
                                           eos_token_id=3, cls_token_id=2, sep_token_id=3,
                                           mask_token_id=tok.mask_token_id, global_attn_every_n_layers=1,
                                           **{**small, "num_hidden_layers": 2})
    transformers.ModernBertForMaskedLM(mb_cfg).save_pretrained(root / "modernbert")
    gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_embd=32, n_layer=1, n_head=2, n_positions=64,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id))
    gpt2.save_pretrained(root / "gpt2")
    _tokenizer(mask=False).save_pretrained(root / "gpt2")
    ids = np.asarray(tok(TEXT, add_special_tokens=False)["input_ids"], dtype=np.uint16)
    ids.tofile(root / "corpus.bin")
    (root / "corpus.txt").write_text(TEXT)
    return {"root": root, "tok": tok, "V": V, "bert": root / "bert", "modernbert": root / "modernbert",
            "gpt2": root / "gpt2", "bin": root / "corpus.bin", "txt": root / "corpus.txt"}


def _data(hf, seq_len=16):
    return load_dataset("tokens", path=str(hf["bin"]), seq_len=seq_len, vocab_size=hf["V"],
                        tokenizer=str(hf["bert"]), val_sequences=8)


def test_mask_id_vocabulary_and_time_input(hf):
    K = hf["V"] - 6  # a smaller data vocabulary: the output keeps the first K logits
    den = load_hf_denoiser(hf["bert"], vocab_size=K)
    assert den.mask_token_id == hf["tok"].mask_token_id and not den.appended_mask
    z = torch.tensor([[1, K, 3, K]])
    assert den.model_ids(z).tolist() == [[1, den.mask_token_id, 3, den.mask_token_id]]
    den.eval()
    out = den(z, torch.tensor([0.5]))
    assert out.shape == (1, 4, K)
    full = den.model(input_ids=den.model_ids(z)).logits[..., :K]
    m = den.mask_token_id
    assert torch.all(out[..., m] == -1e4)  # the mask token is never drawn
    keep = [c for c in range(K) if c != m]
    assert torch.equal(out[..., keep], full[..., keep])
    # a zero-initialized time input leaves the model as it was
    timed = load_hf_denoiser(hf["bert"], vocab_size=K, time_input=True).eval()
    assert torch.allclose(timed(z, torch.tensor([0.3])), out, atol=1e-6)
    with pytest.raises(ValueError, match="the data has K=500 tokens but the model embeds only"):
        load_hf_denoiser(hf["bert"], vocab_size=500)
    # a model without a mask token gets one appended (GPT-2: a causal LM)
    g = load_hf_denoiser(hf["gpt2"], vocab_size=hf["V"])
    assert g.appended_mask and g.mask_token_id == hf["V"] and model_spec(g)["auto_class"] == "causal-lm"
    assert g.get_input_embeddings().num_embeddings == hf["V"] + 1
    assert g(torch.tensor([[0, hf["V"]]]), torch.ones(1)).shape == (1, 2, hf["V"])
    # a uniform process has no MASK
    u = load_hf_denoiser(hf["bert"], vocab_size=K, masked=False)
    assert u.mask_token_id is None and torch.equal(u.model_ids(z.clamp(max=K - 1)), z.clamp(max=K - 1))


def test_noise_input_and_rebuild_from_the_spec(hf):
    torch.manual_seed(0)
    den = load_hf_denoiser(hf["modernbert"], vocab_size=hf["V"], time_input=True).eval()
    stu = NoiseInput(den, 8).eval()
    z, t = torch.randint(0, hf["V"] + 1, (2, 10)), torch.rand(2)
    eps = torch.randn(2, 10, 8)
    assert torch.allclose(stu(z, t, eps), den(z, t), atol=1e-6)
    with torch.no_grad():
        stu.noise_proj.weight.normal_()
    assert not torch.allclose(stu(z, t, eps), den(z, t))
    spec = model_spec(stu)
    assert spec["arch"] == f"hf:{hf['modernbert'].resolve()}" and spec["d_noise"] == 8
    again = build_model(spec)
    again.load_state_dict(stu.state_dict())
    assert torch.allclose(again.eval()(z, t, eps), stu(z, t, eps), atol=1e-6)


def test_python_teacher_distill_sample_modernbert(hf, tmp_path):
    ds = _data(hf)
    proc = make_process("masked", ds.vocab_size)
    torch.manual_seed(0)
    teacher = load_hf_denoiser(hf["modernbert"], vocab_size=ds.vocab_size)
    train_teacher(teacher, proc, ds, TrainConfig(steps=3, batch_size=4, eval_every=3,
                                                 eval_batches=1, save_every=0, device="cpu",
                                                 progress=False), tmp_path / "t", resume=False)
    t2, p2, cfg = load_model(tmp_path / "t" / "checkpoint")
    assert isinstance(t2, HFDenoiser) and cfg["model"]["arch"].startswith("hf:")
    distill(t2, p2, ds, DistillConfig(k=2, steps=2, batch_size=4, d_noise=4, progress=False,
                                      device="cpu"), tmp_path / "s")
    student, _, k, scfg = load_student(tmp_path / "s" / "checkpoint")
    assert isinstance(student, NoiseInput) and student.d_noise == 4 and k == 2
    x = sample_many(student, proc, 2, 3, ds.seq_len)
    assert x.shape == (3, 16) and int(x.max()) < ds.vocab_size


def test_cli_bert_on_a_uint16_corpus(hf, tmp_path, capsys):
    """train-teacher, distill, sample (decoded with the tokenizer) and eval with
    the reference's own tokenizer, all from the CLI, on a memory-mapped uint16 corpus."""
    t, s = tmp_path / "t", tmp_path / "s"
    data = ["--data", "tokens", "--data-path", str(hf["bin"]), "--dtype", "uint16",
            "--seq-len", "16", "--vocab-size", str(hf["V"]), "--tokenizer", str(hf["bert"]),
            "--val-sequences", "16"]
    common = ["--no-progress", "--device", "cpu", "--threads", "1"]
    assert cli.main(["train-teacher", "--run-dir", str(t), "--model", f"hf:{hf['bert']}",
                     "--time-input", "--steps", "3", "--batch-size", "4", "--eval-every", "3",
                     "--eval-batches", "1", *data, *common]) == 0
    spec = json.loads((t / "checkpoint" / "config.json").read_text())["model"]
    assert spec["time_input"] and spec["mask_token_id"] == hf["tok"].mask_token_id
    assert cli.main(["distill", "--teacher", str(t), "--run-dir", str(s), "--k", "2", "--steps", "2",
                     "--batch-size", "4", *common]) == 0
    capsys.readouterr()
    assert cli.main(["sample", "--run-dir", str(s), "--batch", "3", *common]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["steps"] == 2 and open(out["text"]).read().strip()
    assert cli.main(["eval", str(t), str(s), "--steps", "2", "--hf-reference", str(hf["gpt2"]),
                     "--n-samples", "8", "--half-batch", "2", "--no-plots", "--out",
                     str(tmp_path / "ev"), *common]) == 0
    rec = json.loads((tmp_path / "ev" / "eval.json").read_text())["records"]
    assert all(np.isfinite(r["metrics"]["nll"]["mean"]) for r in rec)


def test_hf_reference_scores_rows_that_retokenize_shorter(hf):
    """Blocker 4: character-level rows decoded and re-tokenized by the reference
    have unequal lengths; samples shorter than the held-out rows used to raise."""
    from dmmd_ext.evaluation.reference_model import HFReference
    from dmmd_ext.evaluation.suite import EvalSuite

    ds = load_dataset("tokens", path=str(hf["txt"]), seq_len=24, val_sequences=16)
    ref = HFReference(hf["gpt2"])
    encode = ref.encoder_for(ds.decode, ds.val[:])
    # samples that re-tokenize much shorter than the data: one merged word repeated
    word = [ds.info["alphabet"].index(c) for c in "the "]
    samples = torch.tensor([word * 6] * 8)
    rows = encode(samples)
    assert rows.shape[1] == encode(ds.val[:]).shape[1] and int((rows == -1).sum()) > 0
    suite = EvalSuite(ds.train[:64], ds.val[:], reference=ref, half_batch=2, encode=encode)
    m = suite.measure(samples)
    assert np.isfinite(m["nll"]["mean"]) and np.isfinite(m["gen_ppl"])


_REMOTE_CONFIG = '''from transformers import PretrainedConfig


class TinyDiffConfig(PretrainedConfig):
    model_type = "tinydiff"

    def __init__(self, vocab_size=20, hidden_size=16, **kw):
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        super().__init__(**kw)
'''
_REMOTE_MODEL = '''import torch.nn as nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_tinydiff import TinyDiffConfig


class TinyDiffForMaskedLM(PreTrainedModel):
    config_class = TinyDiffConfig

    def __init__(self, config):
        super().__init__(config)
        self.embed = nn.Embedding(config.vocab_size, config.hidden_size)
        self.mix = nn.Linear(config.hidden_size, config.hidden_size)
        self.head = nn.Linear(config.hidden_size, config.vocab_size)
        self.post_init()

    def get_input_embeddings(self):
        return self.embed

    def set_input_embeddings(self, value):
        self.embed = value

    def forward(self, input_ids=None, inputs_embeds=None, **kw):
        h = self.embed(input_ids) if inputs_embeds is None else inputs_embeds
        h = h + self.mix(h.mean(1, keepdim=True)).tanh()
        return MaskedLMOutput(logits=self.head(h))
'''


def test_trust_remote_code_model(tmp_path):
    """A model whose code lives in its directory (auto_map, as MDLM-style checkpoints
    ship), without a mask token: trains, distills with the generic noise input, and
    its checkpoints rebuild (trust_remote_code is recorded in the spec)."""
    d = tmp_path / "tinydiff"
    d.mkdir()
    (d / "configuration_tinydiff.py").write_text(_REMOTE_CONFIG)
    (d / "modeling_tinydiff.py").write_text(_REMOTE_MODEL)
    (d / "config.json").write_text(json.dumps({
        "model_type": "tinydiff", "vocab_size": 20, "hidden_size": 16,
        "auto_map": {"AutoConfig": "configuration_tinydiff.TinyDiffConfig",
                     "AutoModelForMaskedLM": "modeling_tinydiff.TinyDiffForMaskedLM"}}))
    with pytest.raises(ValueError, match="trust_remote_code"):
        load_hf_denoiser(d, vocab_size=12)
    np.save(tmp_path / "toks.npy", np.random.default_rng(0).integers(0, 12, size=(64, 8)))
    ds = load_dataset("tokens", path=str(tmp_path / "toks.npy"), vocab_size=12)
    proc = make_process("masked", 12)
    torch.manual_seed(0)
    teacher = load_hf_denoiser(d, vocab_size=12, trust_remote_code=True, pretrained=False)
    assert teacher.appended_mask and teacher.mask_token_id == 20
    train_teacher(teacher, proc, ds, TrainConfig(steps=2, batch_size=4, eval_every=0,
                                                 save_every=0, device="cpu", progress=False),
                  tmp_path / "t", resume=False)
    t2, _, cfg = load_model(tmp_path / "t" / "checkpoint")
    assert cfg["model"]["trust_remote_code"] and type(t2.model).__name__ == "TinyDiffForMaskedLM"
    distill(t2, proc, ds, DistillConfig(k=2, steps=2, batch_size=4, d_noise=3, progress=False,
                                        device="cpu"), tmp_path / "s")
    student, _, _, _ = load_student(tmp_path / "s" / "checkpoint")
    assert student.d_noise == 3 and sample_many(student, proc, 2, 2, 8).shape == (2, 8)
