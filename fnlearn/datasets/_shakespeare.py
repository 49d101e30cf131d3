"""Character-level text corpora: tiny Shakespeare (downloaded on demand, verified by sha256) or any text.

A :class:`CharCorpus` maps each distinct character of a text to an id (its rank in the sorted
vocabulary, as nanoGPT's ``data/shakespeare_char/prepare.py`` does), splits the ids into a training
part (the first 90%) and a validation part (the rest), and samples random windows of ids for
next-character prediction.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from numpy.typing import ArrayLike

from .._types import Array
from ._download import cache_dir, download_verified, sha256_verifier
from ._idx import DatasetError, DownloadError, read_uncompressed

__all__ = ["SHAKESPEARE_FILE", "SHAKESPEARE_MIRRORS", "SHAKESPEARE_SHA256", "CharCorpus", "char_corpus",
           "default_shakespeare_dir", "tiny_shakespeare"]

SHAKESPEARE_FILE = "input.txt"
"""The file name of the corpus, in the data directory and on each mirror."""

SHAKESPEARE_MIRRORS: tuple[str, ...] = (
    "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/",
)
"""Base URLs serving ``input.txt``: char-rnn's copy, the one nanoGPT's ``prepare.py`` downloads."""

SHAKESPEARE_SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
"""The sha256 of ``input.txt`` (1,115,394 bytes)."""

_CODEC = "utf-32-le"  # one 4-byte code point per character: str <-> uint32 array without a Python loop


def _code_points(text: str) -> Array:
    return np.frombuffer(text.encode(_CODEC, "surrogatepass"), dtype="<u4")


def _from_code_points(codes: Array) -> str:
    return codes.astype("<u4", copy=False).tobytes().decode(_CODEC, "surrogatepass")


def _read_only(a: Array) -> Array:
    a.flags.writeable = False
    return a


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class CharCorpus:
    """A text as a sequence of character ids, split into training and validation ids.

    Args:
        text: the whole corpus, a non-empty str.
        train_fraction: the share of characters in the training split; the split is nanoGPT's:
            ``n = len(text); train = ids[:int(n * train_fraction)]``, ``val`` the rest.

    Attributes:
        text: the corpus.
        vocab: the distinct characters of ``text``, sorted by code point, as one str; the id of a
            character is its index in ``vocab``.
        train: read-only int64 ids of the first ``int(n * train_fraction)`` characters, shape ``(n_train,)``.
        val: read-only int64 ids of the remaining characters, shape ``(n - n_train,)``.

    Example:
        >>> import numpy as np
        >>> corpus = CharCorpus("to be or not to be")
        >>> corpus.vocab, corpus.vocab_size
        (' benort', 7)
        >>> ids = corpus.encode("robot")
        >>> ids, corpus.decode(ids)
        (array([5, 4, 1, 4, 6]), 'robot')
        >>> x, y = corpus.get_batch("train", 2, 4, np.random.default_rng(0))
        >>> x.shape, x.dtype, bool((x[:, 1:] == y[:, :-1]).all())
        ((2, 4), dtype('int64'), True)
    """

    text: str
    train_fraction: float = 0.9
    vocab: str = dataclasses.field(init=False)
    train: Array = dataclasses.field(init=False)
    val: Array = dataclasses.field(init=False)
    _codes: Array = dataclasses.field(init=False)  # the vocabulary's sorted code points, uint32

    def __post_init__(self) -> None:
        if not isinstance(self.text, str) or not self.text:
            got = "an empty str" if isinstance(self.text, str) else type(self.text).__name__
            raise TypeError(f"CharCorpus: text must be a non-empty str, got {got}. To read a file, use "
                            "fnlearn.datasets.char_corpus(path).")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ValueError(f"CharCorpus: train_fraction must be in (0, 1], got {self.train_fraction!r}.")
        codes = _code_points(self.text)
        vocab_codes = np.unique(codes)
        ids = np.searchsorted(vocab_codes, codes).astype(np.int64, copy=False)
        n_train = int(len(ids) * self.train_fraction)
        set_ = object.__setattr__  # the dataclass is frozen: derived fields are set once, here
        set_(self, "_codes", _read_only(vocab_codes))
        set_(self, "vocab", _from_code_points(vocab_codes))
        set_(self, "train", _read_only(ids[:n_train]))
        set_(self, "val", _read_only(ids[n_train:]))

    @property
    def vocab_size(self) -> int:
        """The number of distinct characters (65 for tiny Shakespeare)."""
        return len(self._codes)

    def __repr__(self) -> str:
        return (f"CharCorpus({len(self.text):,} characters, vocab_size={self.vocab_size}, "
                f"train={len(self.train):,} ids, val={len(self.val):,} ids)")

    def encode(self, text: str) -> Array:
        """The ids of the characters of ``text``: an int64 array of shape ``(len(text),)``.

        Raises:
            ValueError: ``text`` has a character that is not in the vocabulary (the message names the
                first one and its position).
        """
        if not isinstance(text, str):
            raise TypeError(f"CharCorpus.encode: expected a str, got {type(text).__name__}.")
        codes = _code_points(text)
        ids = np.minimum(np.searchsorted(self._codes, codes), self.vocab_size - 1)
        unknown = np.flatnonzero(self._codes[ids] != codes)
        if unknown.size:
            i = int(unknown[0])
            raise ValueError(f"CharCorpus.encode: the character {text[i]!r} at position {i} is not in "
                             f"the vocabulary ({unknown.size} unknown characters in all); the vocabulary "
                             f"is {self.vocab!r}. Remove or replace those characters.")
        return ids.astype(np.int64, copy=False)

    def decode(self, ids: ArrayLike) -> str:
        """The text whose character ids are ``ids``, a 1-D array of ints in ``[0, vocab_size)``.

        Raises:
            ValueError: ``ids`` is not 1-D, not integers, or has an id outside ``[0, vocab_size)``.
        """
        ids = np.asarray(ids)
        if ids.ndim != 1 or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
            raise ValueError(f"CharCorpus.decode: expected a 1-D array of integer ids, got {ids.dtype} "
                             f"of shape {ids.shape}. Decode a batch row by row: corpus.decode(x[i]).")
        bad = np.flatnonzero((ids < 0) | (ids >= self.vocab_size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(f"CharCorpus.decode: id {int(ids[i])} at position {i} is outside "
                             f"[0, {self.vocab_size}), the range of this corpus's vocabulary.")
        return _from_code_points(self._codes[ids.astype(np.intp, copy=False)])

    def get_batch(self, split: str, batch_size: int, block_size: int,
                  rng: np.random.Generator) -> tuple[Array, Array]:
        """Random windows of ``block_size`` ids from a split and their next-character targets.

        The start positions are drawn uniformly from ``[0, len(data) - block_size)``, as nanoGPT's
        ``torch.randint(len(data) - block_size, (batch_size,))``, with replacement.

        Args:
            split: ``"train"`` or ``"val"``.
            batch_size: windows per batch ``B``, a positive int.
            block_size: ids per window ``T``, a positive int smaller than the split's length.
            rng: the random generator.

        Returns:
            ``(x, y)``: int64 arrays of shape ``(B, T)``; ``x[b] = data[s_b : s_b + T]`` and
            ``y[b] = data[s_b + 1 : s_b + T + 1]`` (``x`` shifted left by one).
        """
        if split not in ("train", "val"):
            raise ValueError(f"CharCorpus.get_batch: split must be 'train' or 'val', got {split!r}.")
        for name, value in (("batch_size", batch_size), ("block_size", block_size)):
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
                raise ValueError(f"CharCorpus.get_batch: {name} must be a positive int, got {value!r}.")
        if not isinstance(rng, np.random.Generator):
            raise TypeError(f"CharCorpus.get_batch: rng must be a numpy.random.Generator, got "
                            f"{type(rng).__name__}. Pass rng=np.random.default_rng(seed).")
        data = self.train if split == "train" else self.val
        if block_size >= len(data):
            raise ValueError(f"CharCorpus.get_batch: block_size must be smaller than the {split} split's "
                             f"{len(data)} ids (one more is needed for the targets), got {block_size}. "
                             "Use a shorter block_size or a longer text.")
        starts = rng.integers(0, len(data) - block_size, size=batch_size)
        windows = sliding_window_view(data, block_size)  # a view: (len(data) - T + 1, T)
        return windows[starts], windows[starts + 1]


def char_corpus(path: str | os.PathLike[str], *, encoding: str = "utf-8",
                train_fraction: float = 0.9) -> CharCorpus:
    """Read a text file as a :class:`CharCorpus`, to train a character model on your own text.

    Args:
        path: the text file.
        encoding: its encoding.
        train_fraction: the share of characters in the training split.

    Raises:
        DatasetError: the file cannot be decoded with ``encoding``.

    Example:
        >>> corpus = char_corpus("my_text.txt")  # doctest: +SKIP
    """
    try:
        text = Path(path).read_text(encoding=encoding)
    except UnicodeDecodeError as e:
        raise DatasetError(f"char_corpus: {os.fspath(path)} is not {encoding} text ({e}). Pass the "
                           "file's encoding as encoding=.") from e
    return CharCorpus(text, train_fraction)


def default_shakespeare_dir() -> Path:
    """The directory ``tiny_shakespeare`` uses when given none: ``$FNLEARN_SHAKESPEARE_DIR``, else a
    per-user cache: ``$XDG_CACHE_HOME/fnlearn/tinyshakespeare``, or ``~/.cache/fnlearn/tinyshakespeare``
    when ``XDG_CACHE_HOME`` is unset."""
    return cache_dir("FNLEARN_SHAKESPEARE_DIR", "tinyshakespeare")


def _where_to_put(directory: Path) -> str:
    return (f"To load tiny Shakespeare without network access, put char-rnn's {SHAKESPEARE_FILE} in "
            f"{directory}, or pass data_dir= (or set FNLEARN_SHAKESPEARE_DIR to) a directory that has it.")


def tiny_shakespeare(data_dir: str | os.PathLike[str] | None = None, download: bool = True, *,
                     mirrors: Sequence[str] = SHAKESPEARE_MIRRORS, sha256: str = SHAKESPEARE_SHA256,
                     progress: bool = True) -> CharCorpus:
    """Load char-rnn's tiny Shakespeare corpus, downloading it when missing; it is verified by sha256.

    Args:
        data_dir: the directory with ``input.txt``; default :func:`default_shakespeare_dir`. A download
            is written there (through a temporary file, renamed only once verified).
        download: when False, a missing file is an error instead of a download.
        mirrors: base URLs to download it from, tried in turn (default :data:`SHAKESPEARE_MIRRORS`).
        sha256: the expected sha256 of the file (default :data:`SHAKESPEARE_SHA256`).
        progress: show a progress bar while downloading (tqdm when installed).

    Returns:
        a :class:`CharCorpus` of 1,115,394 characters, 65 of them distinct, with nanoGPT's split:
        1,003,854 training ids and 111,540 validation ids.

    Raises:
        DownloadError: the file is missing and could not be downloaded; the message says where to put it.
        DatasetError: the file is corrupt or not the expected file; the message names it.

    Example:
        >>> import numpy as np
        >>> corpus = tiny_shakespeare()  # doctest: +SKIP
        >>> corpus.vocab_size, len(corpus.train), len(corpus.val)  # doctest: +SKIP
        (65, 1003854, 111540)
        >>> x, y = corpus.get_batch("train", 32, 256, np.random.default_rng(0))  # doctest: +SKIP
        >>> x.shape, y.shape  # doctest: +SKIP
        ((32, 256), (32, 256))
    """
    directory = Path(data_dir).expanduser() if data_dir is not None else default_shakespeare_dir()
    path = directory / SHAKESPEARE_FILE
    verify = sha256_verifier("tiny_shakespeare", path, sha256, "char-rnn's original input.txt")
    if not path.is_file():
        if not download:
            raise DownloadError(f"tiny_shakespeare: {SHAKESPEARE_FILE} not found in {directory} and "
                                "download=False. " + _where_to_put(directory))
        try:
            download_verified(SHAKESPEARE_FILE, str(directory), mirrors, verify, progress=progress)
        except DownloadError as e:
            raise DownloadError(f"tiny_shakespeare: {e}. " + _where_to_put(directory)) from e
    data = read_uncompressed(path)
    verify(data)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DatasetError(f"tiny_shakespeare: {path} is not UTF-8 text ({e}).") from e
    return CharCorpus(text)
