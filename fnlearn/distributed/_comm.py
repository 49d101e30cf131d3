"""Who am I among the ranks, and stopping every rank when one fails."""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from typing import Any, Iterator

from mpi4py import MPI

Comm = Any
"""An ``mpi4py.MPI.Intracomm``; ``None`` in the public functions means ``MPI.COMM_WORLD``."""


def resolve(comm: Comm | None) -> Comm:
    """``comm``, or ``MPI.COMM_WORLD`` when it is None."""
    return MPI.COMM_WORLD if comm is None else comm


def rank(*, comm: Comm | None = None) -> int:
    """This process's rank in ``comm`` (default: all processes), from 0 to ``size() - 1``.

    Example:
        >>> from fnlearn import distributed as dist
        >>> dist.rank()
        0
    """
    return int(resolve(comm).Get_rank())


def size(*, comm: Comm | None = None) -> int:
    """The number of ranks in ``comm`` (default: all processes); 1 in a plain ``python3`` run.

    Example:
        >>> from fnlearn import distributed as dist
        >>> dist.size()
        1
    """
    return int(resolve(comm).Get_size())


def is_root(*, comm: Comm | None = None) -> bool:
    """True on rank 0 only: the rank that prints progress and writes checkpoints and plots.

    Example:
        >>> from fnlearn import distributed as dist
        >>> if dist.is_root():
        ...     print("only rank 0 prints this")
        only rank 0 prints this
    """
    return rank(comm=comm) == 0


@contextlib.contextmanager
def abort_on_error(*, comm: Comm | None = None, exit_code: int = 1) -> Iterator[None]:
    """Stop every rank when the code inside raises on one rank, instead of leaving the others waiting.

    Without it, a rank that raises ends while the others wait for it in their next collective call,
    forever. Inside this context an exception (or ``KeyboardInterrupt``, or ``sys.exit`` with a nonzero
    code) prints ``rank R of N`` with the traceback to stderr and calls ``MPI_Abort``, which makes
    ``mpiexec`` end all ranks and exit with a nonzero status. In a single process the exception
    propagates as usual. A rank that dies without raising (a crash, ``os._exit``) is ended by
    ``mpiexec`` itself, which then ends the other ranks.

    Args:
        comm: the communicator whose ranks are stopped (default: all processes).
        exit_code: the status passed to ``MPI_Abort``; nonzero.

    Example:
        >>> from fnlearn import distributed as dist
        >>> with dist.abort_on_error():
        ...     total = sum(range(4))
        >>> total
        6
    """
    comm = resolve(comm)
    try:
        yield
    except SystemExit as exc:
        if exc.code in (None, 0) or comm.Get_size() == 1:
            raise
        _abort(comm, exc, exit_code)
    except BaseException as exc:
        if comm.Get_size() == 1:
            raise
        _abort(comm, exc, exit_code)


def _abort(comm: Comm, exc: BaseException, exit_code: int) -> None:
    me, n = comm.Get_rank(), comm.Get_size()
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    message = (f"fnlearn.distributed: rank {me} of {n} stopped with {type(exc).__name__}: {exc}\n"
               + "".join(lines)
               + f"fnlearn.distributed: rank {me} of {n} is stopping all {n} ranks (MPI_Abort).\n")
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    sys.stderr.write(message)
    sys.stderr.flush()
    # The launcher forwards each rank's output asynchronously and stops forwarding when the job is
    # torn down; a moment's grace lets the message (the reason for the abort) reach the user.
    time.sleep(0.2)
    comm.Abort(exit_code)
    os._exit(exit_code)  # some MPI libraries return from MPI_Abort before mpiexec ends the process


def abort_on_uncaught_exception(enable: bool = True) -> None:
    """Make an uncaught exception on any rank stop the whole job (``import fnlearn.distributed`` does).

    Without it, a rank whose script ends with an uncaught exception exits while the other ranks wait
    for it in their next collective call, forever. With it (as under ``python -m mpi4py``) such an
    exception prints the rank and the traceback and calls ``MPI_Abort``, so ``mpiexec`` ends every
    rank with a nonzero status. It only acts when there is more than one rank, and it wraps whatever
    ``sys.excepthook`` was installed before (which still handles one-process runs). An exception
    raised by another thread, and ``sys.exit(1)`` on one rank, do not reach ``sys.excepthook``: wrap
    the script's body in :func:`abort_on_error` for those. ``enable=False`` restores the hook
    that was there before.

    Example:
        >>> import sys
        >>> from fnlearn import distributed as dist
        >>> getattr(sys.excepthook, "aborts_mpi_job", False)
        True
    """
    current = sys.excepthook
    previous = getattr(current, "previous_hook", None)
    if not enable:
        if previous is not None:
            sys.excepthook = previous
        return
    if previous is not None:  # already installed
        return

    def hook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        comm = MPI.COMM_WORLD
        if comm.Get_size() == 1:
            current(exc_type, exc, tb)
            return
        _abort(comm, exc.with_traceback(tb), 1)

    hook.previous_hook = current  # type: ignore[attr-defined]
    hook.aborts_mpi_job = True  # type: ignore[attr-defined]
    sys.excepthook = hook
