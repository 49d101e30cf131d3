"""fnlearn.datasets.tiny_shakespeare and CharCorpus: the real file, the split, the sampler, the download."""

import dataclasses
import hashlib
import socket
import urllib.request

import numpy as np
import pytest

from fnlearn import datasets
from fnlearn.datasets import CharCorpus, DatasetError, DownloadError, char_corpus, tiny_shakespeare

# Facts about the real corpus, as nanoGPT's data/shakespeare_char/prepare.py prints them.
N_CHARS, N_TRAIN, N_VAL = 1_115_394, 1_003_854, 111_540
NANOGPT_VOCAB = "\n !$&',-.3:;?ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
CANONICAL_URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"


@pytest.fixture(scope="module")
def corpus(shakespeare_dir):
    return tiny_shakespeare(shakespeare_dir, download=False)


def _flip_one_byte(raw: bytes, i: int = 500_000) -> bytes:
    out = bytearray(raw)
    out[i] ^= 0x01  # 'e' <-> 'd' and the like: still ASCII text of the right length; only the hash can tell
    return bytes(out)


# ------------------------------------------------------------------------------------------- real file
def test_real_corpus_sizes_vocab_and_split(corpus, shakespeare_dir):
    assert (shakespeare_dir / "input.txt").stat().st_size == N_CHARS
    assert len(corpus.text) == N_CHARS and corpus.text.startswith("First Citizen:\n")
    assert corpus.vocab == NANOGPT_VOCAB and corpus.vocab_size == 65
    assert corpus.train.shape == (N_TRAIN,) and corpus.val.shape == (N_VAL,)
    assert corpus.train.dtype == np.int64 and corpus.val.dtype == np.int64
    assert corpus.decode(corpus.train) + corpus.decode(corpus.val) == corpus.text


def test_real_ids_match_a_dictionary_encoder(corpus):
    stoi = {ch: i for i, ch in enumerate(sorted(set(corpus.text)))}  # prepare.py's mapping, written plainly
    expected = np.array([stoi[c] for c in corpus.text])
    np.testing.assert_array_equal(np.concatenate([corpus.train, corpus.val]), expected)
    assert corpus.encode("First").tolist() == [18, 47, 56, 57, 58]  # F = 13 + 5, i = 39 + 8, ...


def test_real_batches_are_windows_of_the_training_text(corpus):
    x, y = corpus.get_batch("train", 16, 64, np.random.default_rng(3))
    assert x.shape == y.shape == (16, 64) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], y[:, :-1])
    train_text = corpus.text[:N_TRAIN]
    for row_x, row_y in zip(x, y):
        assert corpus.decode(np.append(row_x, row_y[-1])) in train_text
    xv, _ = corpus.get_batch("val", 4, 32, np.random.default_rng(3))
    for row in xv:
        assert corpus.decode(row) in corpus.text[N_TRAIN:]


def test_data_dir_defaults_to_the_environment_variable(shakespeare_dir, monkeypatch):
    monkeypatch.setenv("FNLEARN_SHAKESPEARE_DIR", str(shakespeare_dir))
    assert datasets.default_shakespeare_dir() == shakespeare_dir
    assert len(tiny_shakespeare(download=False).text) == N_CHARS


def test_a_flipped_byte_in_the_cached_file_is_an_error(shakespeare_dir, tmp_path):
    raw = (shakespeare_dir / "input.txt").read_bytes()
    (tmp_path / "input.txt").write_bytes(_flip_one_byte(raw))
    with pytest.raises(DatasetError, match="input.txt is not the expected file.*sha256") as info:
        tiny_shakespeare(tmp_path, download=False)
    assert str(tmp_path) in str(info.value) and "tiny_shakespeare" in str(info.value)


def test_download_of_the_real_file_from_a_file_url(shakespeare_dir, tmp_path):
    dest = tmp_path / "cache" / "dir"
    corpus = tiny_shakespeare(dest, mirrors=(shakespeare_dir.as_uri() + "/",), progress=False)
    assert len(corpus.train) == N_TRAIN
    assert [p.name for p in dest.iterdir()] == ["input.txt"]
    assert (dest / "input.txt").read_bytes() == (shakespeare_dir / "input.txt").read_bytes()


def test_a_corrupt_download_is_refused_and_leaves_no_file(shakespeare_dir, tmp_path):
    source, dest = tmp_path / "mirror", tmp_path / "cache"
    source.mkdir()
    (source / "input.txt").write_bytes(_flip_one_byte((shakespeare_dir / "input.txt").read_bytes()))
    with pytest.raises(DownloadError, match="sha256") as info:
        tiny_shakespeare(dest, mirrors=(source.as_uri() + "/",), progress=False)
    assert str(dest) in str(info.value) and "FNLEARN_SHAKESPEARE_DIR" in str(info.value)
    assert list(dest.iterdir()) == []  # neither input.txt nor a .part file


# ------------------------------------------------------------------ download machinery with a small fake
FAKE = "Now is the winter of our discontent\nMade glorious summer by this sun of York;\n" * 20
FAKE_SHA = hashlib.sha256(FAKE.encode()).hexdigest()


def test_the_default_mirror_is_the_url_nanogpt_downloads(tmp_path, monkeypatch):
    assert datasets.SHAKESPEARE_MIRRORS[0] + datasets.SHAKESPEARE_FILE == CANONICAL_URL
    (tmp_path / "src.txt").write_text(FAKE)
    real_urlopen, requested = urllib.request.urlopen, []

    def offline_urlopen(url, timeout=None):
        requested.append(url)
        return real_urlopen((tmp_path / "src.txt").as_uri(), timeout=timeout)

    monkeypatch.setattr(urllib.request, "urlopen", offline_urlopen)
    corpus = tiny_shakespeare(tmp_path / "cache", sha256=FAKE_SHA, progress=False)
    assert requested == [CANONICAL_URL] and corpus.text == FAKE
    tiny_shakespeare(tmp_path / "cache", sha256=FAKE_SHA, download=False)  # cached: no second request
    assert requested == [CANONICAL_URL]


def test_mirror_fallback_and_the_real_hash_rejects_a_different_file(tmp_path):
    (tmp_path / "good").mkdir()
    (tmp_path / "good" / "input.txt").write_text(FAKE)
    mirrors = ((tmp_path / "missing").as_uri() + "/", (tmp_path / "good").as_uri() + "/")
    assert tiny_shakespeare(tmp_path / "a", mirrors=mirrors, sha256=FAKE_SHA, progress=False).text == FAKE
    with pytest.raises(DownloadError, match="sha256"):
        tiny_shakespeare(tmp_path / "b", mirrors=mirrors, progress=False)  # the real sha256: not this text
    assert list((tmp_path / "b").iterdir()) == []


def test_missing_file_offline_says_where_to_put_it(tmp_path):
    with pytest.raises(DownloadError, match="download=False") as info:
        tiny_shakespeare(tmp_path, download=False)
    assert f"in {tmp_path}" in str(info.value) and "FNLEARN_SHAKESPEARE_DIR" in str(info.value)
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError, match="input.txt") as info:
        tiny_shakespeare(tmp_path, mirrors=(f"http://127.0.0.1:{port}/",), progress=False)
    assert f"in {tmp_path}" in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_default_shakespeare_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("FNLEARN_SHAKESPEARE_DIR", str(tmp_path / "env"))
    assert datasets.default_shakespeare_dir() == tmp_path / "env"
    monkeypatch.delenv("FNLEARN_SHAKESPEARE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.default_shakespeare_dir() == tmp_path / "xdg" / "fnlearn" / "tinyshakespeare"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_shakespeare_dir() == tmp_path / "home" / ".cache" / "fnlearn" / "tinyshakespeare"


# ------------------------------------------------------------------------------- CharCorpus on any text
def test_vocab_and_ids_follow_sorted_set_for_any_unicode():
    text = "zebra Ärger\tñandú 😀 日本語 ab\U0001F600\n"
    corpus = CharCorpus(text, train_fraction=1.0)
    chars = sorted(set(text))
    assert corpus.vocab == "".join(chars) and corpus.vocab_size == len(chars)
    assert corpus.train.tolist() == [chars.index(c) for c in text] and corpus.val.size == 0
    assert corpus.decode(corpus.encode(text)) == text
    assert corpus.encode("").shape == (0,) and corpus.decode([]) == ""


def test_split_rule_is_int_of_n_times_the_fraction():
    for n in (1, 9, 10, 11, 99, 1001):
        corpus = CharCorpus("ab" * n)
        assert len(corpus.train) == int(2 * n * 0.9) and len(corpus.val) == 2 * n - int(2 * n * 0.9)


def test_char_corpus_reads_a_file_in_its_encoding(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("héllo wörld\n" * 10, encoding="utf-8")
    corpus = char_corpus(path)
    assert corpus.text == "héllo wörld\n" * 10 and "é" in corpus.vocab
    path.write_text("héllo\n", encoding="latin-1")
    with pytest.raises(DatasetError, match="encoding="):
        char_corpus(path)
    assert char_corpus(path, encoding="latin-1").text == "héllo\n"


def test_batches_are_consecutive_ids_shifted_by_one():
    corpus = CharCorpus("0123456789" * 50)
    x, y = corpus.get_batch("train", 32, 12, np.random.default_rng(0))
    assert x.shape == y.shape == (32, 12) and x.dtype == y.dtype == np.int64
    np.testing.assert_array_equal(x[:, 1:], (x[:, :-1] + 1) % 10)  # each row is a contiguous window
    np.testing.assert_array_equal(y, (x + 1) % 10)
    x[0, 0] = -1  # batches are fresh arrays, not views of the corpus
    assert corpus.train.min() == 0


def test_batches_are_deterministic_given_the_seed():
    corpus = CharCorpus("".join(chr(97 + i % 26) * (1 + i % 3) for i in range(500)))
    a = corpus.get_batch("train", 8, 16, np.random.default_rng(7))
    b = corpus.get_batch("train", 8, 16, np.random.default_rng(7))
    c = corpus.get_batch("train", 8, 16, np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


def test_every_start_is_drawn_and_none_runs_past_the_end():
    corpus = CharCorpus("abcdefghij")  # train ids 0..8 (9 ids), val [9]
    x, y = corpus.get_batch("train", 200, 7, np.random.default_rng(0))
    assert set(x[:, 0].tolist()) == {0, 1}  # starts in [0, 9 - 7): both, as randint(len - T) draws
    x, y = corpus.get_batch("train", 5, 8, np.random.default_rng(0))
    assert (x[:, 0] == 0).all() and (y[:, -1] == 8).all()
    with pytest.raises(ValueError, match="block_size must be smaller than the train split's 9 ids"):
        corpus.get_batch("train", 5, 9, np.random.default_rng(0))
    with pytest.raises(ValueError, match="val split's 1 ids"):
        corpus.get_batch("val", 1, 1, np.random.default_rng(0))


def test_corpus_is_immutable_and_its_repr_is_short():
    corpus = CharCorpus("to be or not to be" * 100)
    with pytest.raises(ValueError):
        corpus.train[0] = 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        corpus.text = "x"
    assert repr(corpus) == "CharCorpus(1,800 characters, vocab_size=7, train=1,620 ids, val=180 ids)"


@pytest.mark.parametrize("call,error,match", [
    (lambda c: c.encode("bat"), ValueError, "'a' at position 1 is not in the vocabulary"),
    (lambda c: c.encode(b"be"), TypeError, "expected a str, got bytes"),
    (lambda c: c.decode([0, 7]), ValueError, r"id 7 at position 1 is outside \[0, 7\)"),
    (lambda c: c.decode([-1]), ValueError, "id -1 at position 0"),
    (lambda c: c.decode(np.zeros((2, 2), np.int64)), ValueError, r"1-D .* shape \(2, 2\).*row by row"),
    (lambda c: c.decode([0.0, 1.0]), ValueError, "integer ids, got float64"),
    (lambda c: c.get_batch("test", 1, 1, np.random.default_rng(0)), ValueError, "'train' or 'val'"),
    (lambda c: c.get_batch("train", 0, 1, np.random.default_rng(0)), ValueError, "batch_size must be"),
    (lambda c: c.get_batch("train", 1, True, np.random.default_rng(0)), ValueError, "block_size must be"),
    (lambda c: c.get_batch("train", 1, 1, 0), TypeError, "numpy.random.Generator, got int"),
    (lambda c: CharCorpus(""), TypeError, "non-empty str, got an empty str"),
    (lambda c: CharCorpus(b"abc"), TypeError, "got bytes.*char_corpus"),
    (lambda c: CharCorpus("abc", train_fraction=0.0), ValueError, r"train_fraction must be in \(0, 1\]"),
])
def test_bad_input_is_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call(CharCorpus("to be or not to be"))
