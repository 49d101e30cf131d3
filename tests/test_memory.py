"""fl.reuse_freed_memory: glibc keeps a step's freed arrays for the next step instead of faulting in
new pages. The evidence is the kernel's count of minor page faults (not a timing), in a fresh process."""

import subprocess
import sys
from pathlib import Path

import pytest

import fnlearn as fl

REPO = Path(__file__).resolve().parents[1]

# Ten 2 MB arrays written and freed together, 20 times: with glibc's defaults the freed memory at the
# heap top exceeds the (adaptive) trim threshold after each round and goes back to the OS, so every
# round faults pages in again (280 a round here; fewer, larger faults where arrays get huge pages).
SCRIPT = """
import resource, sys
import numpy as np
sys.path.insert(0, {repo!r})
import fnlearn as fl
ok = fl.reuse_freed_memory() if sys.argv[1] == "reuse" else None
def rounds(n):
    for _ in range(n):
        arrays = [np.empty(2 ** 19, np.float32) for _ in range(10)]
        for a in arrays:
            a.fill(1.0)
        del arrays
rounds(3)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
rounds(20)
print(ok, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _faults_per_round(mode):
    out = subprocess.run([sys.executable, "-c", SCRIPT.format(repo=str(REPO)), mode], capture_output=True,
                         text=True, timeout=120, check=True).stdout.split()
    return out[0], float(out[1])


@pytest.mark.skipif(fl._memory._glibc_mallopt() is None, reason="needs glibc's mallopt (Linux with glibc)")
def test_freed_arrays_are_reused_instead_of_faulted_in_again():
    ok, reused = _faults_per_round("reuse")
    _, default = _faults_per_round("default")
    assert ok == "True"
    assert default >= 50  # the default trims the heap and faults the pages in again
    assert reused <= default / 10


@pytest.mark.parametrize("kwargs", [{"mmap_threshold": 2 ** 31}, {"trim_threshold": 0},
                                    {"trim_threshold": 2 ** 31}, {"mmap_threshold": 1.5e6},
                                    {"trim_threshold": True}, {"mmap_threshold": "32M"}])
def test_bad_thresholds_are_refused_before_anything_changes(kwargs):
    with pytest.raises(ValueError, match="reuse_freed_memory: .* must be an integer number of bytes in"):
        fl.reuse_freed_memory(**kwargs)


def test_numpy_integers_are_thresholds_too():
    import numpy as np
    assert fl.reuse_freed_memory(trim_threshold=np.int64(2 ** 30), mmap_threshold=np.int32(2 ** 28)) in (True, False)
