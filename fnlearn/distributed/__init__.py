"""fnlearn.distributed: data-parallel training over MPI ranks (the optional ``mpi`` extra).

Every rank runs the same script on its own part of each global batch: the ranks start from the same
parameters (:func:`broadcast`), compute the gradient of their part, and average it over all ranks
(:func:`allreduce_mean`, one MPI call per dtype per step) before the optimizer step, so every rank
takes the same step. :func:`value_and_grad` does the gradient and the average in one call;
:func:`batches` and :func:`shard` give each rank a disjoint part of every global batch. Start the ranks
with ``mpiexec -n 2 python3 train.py``; a plain ``python3 train.py`` is one rank. Importing this module
makes an uncaught exception on any rank abort the whole job (:func:`abort_on_uncaught_exception`).

The communication goes through `mpi4py <https://mpi4py.readthedocs.io>`_, which needs an MPI
library: ``pip install 'fnlearn[mpi]'`` installs both from PyPI (mpi4py and the ``mpich`` wheel, which
also provides ``mpiexec``). See ``docs/distributed.md`` for a full training loop, the fault handling
and the communication cost.

Example (in one process there is one rank, and the collectives return copies):
    >>> import numpy as np
    >>> from fnlearn import distributed as dist
    >>> dist.size(), dist.rank(), dist.is_root()
    (1, 0, True)
    >>> grads = {"w": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)}
    >>> dist.allreduce_mean(grads)["w"]
    array([[1., 1.],
           [1., 1.]], dtype=float32)
"""

try:
    from mpi4py import MPI as _MPI  # noqa: F401  (initialises MPI, once per process)
except ImportError as err:  # mpi4py missing, or installed without an MPI library
    raise ImportError(
        "fnlearn.distributed needs mpi4py and an MPI library, which are not installed (" + str(err)
        + "). Install them with `pip install 'fnlearn[mpi]'` or `pip install mpi4py mpich` (the mpich "
        "wheel provides mpiexec), then start the ranks with `mpiexec -n 2 python3 train.py`.") from err

from ._collectives import allreduce_mean, broadcast
from ._comm import abort_on_error, abort_on_uncaught_exception, is_root, rank, size
from ._data import batches, shard
from ._grad import value_and_grad

__all__ = ["rank", "size", "is_root", "abort_on_error", "abort_on_uncaught_exception", "broadcast",
           "allreduce_mean", "shard", "batches", "value_and_grad"]

# An uncaught exception on one rank stops the whole job instead of leaving the other ranks waiting
# forever (as `python -m mpi4py` does); see abort_on_uncaught_exception.
abort_on_uncaught_exception()
