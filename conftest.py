"""Root pytest configuration: skip collecting optional modules whose extra is not installed."""

import importlib.util

# fnlearn.distributed needs the `mpi` extra (mpi4py); its doctests cannot be collected without it.
# (tests/test_distributed.py skips with a reason instead.)
collect_ignore_glob = [] if importlib.util.find_spec("mpi4py") else ["fnlearn/distributed/*"]
