"""Datasets: MNIST and tiny Shakespeare (downloaded on demand, verified by sha256), the IDX file
format, character corpora from any text, and small synthetic sets.

Example:
    >>> from fnlearn import datasets
    >>> sorted(datasets.MNIST_FILES)
    ['test', 'train']
    >>> issubclass(datasets.DownloadError, datasets.DatasetError), issubclass(datasets.DatasetError, ValueError)
    (True, True)
"""

from ._idx import DatasetError, DownloadError, parse_idx, read_idx
from ._mnist import MNIST_FILES, MNIST_MIRRORS, MNIST_SHA256, default_data_dir, mnist
from ._shakespeare import (SHAKESPEARE_FILE, SHAKESPEARE_MIRRORS, SHAKESPEARE_SHA256, CharCorpus,
                           char_corpus, default_shakespeare_dir, tiny_shakespeare)
from ._synthetic import spirals

__all__ = ["DatasetError", "DownloadError", "MNIST_FILES", "MNIST_MIRRORS", "MNIST_SHA256",
           "default_data_dir", "mnist", "parse_idx", "read_idx", "spirals",
           "SHAKESPEARE_FILE", "SHAKESPEARE_MIRRORS", "SHAKESPEARE_SHA256", "CharCorpus", "char_corpus",
           "default_shakespeare_dir", "tiny_shakespeare"]
