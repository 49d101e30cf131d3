"""The scripts here run under mpiexec, started by tests/test_distributed.py: pytest does not collect them."""

collect_ignore_glob = ["*.py"]
