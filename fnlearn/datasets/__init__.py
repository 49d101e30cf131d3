"""Datasets: MNIST (downloaded on demand, verified by sha256) and the IDX file format.

Example:
    >>> from fnlearn import datasets
    >>> sorted(datasets.MNIST_FILES)
    ['test', 'train']
    >>> issubclass(datasets.DownloadError, datasets.DatasetError), issubclass(datasets.DatasetError, ValueError)
    (True, True)
"""

from ._idx import DatasetError, DownloadError, parse_idx, read_idx
from ._mnist import MNIST_FILES, MNIST_MIRRORS, MNIST_SHA256, default_data_dir, mnist
from ._synthetic import spirals

__all__ = ["DatasetError", "DownloadError", "MNIST_FILES", "MNIST_MIRRORS", "MNIST_SHA256",
           "default_data_dir", "mnist", "parse_idx", "read_idx", "spirals"]
