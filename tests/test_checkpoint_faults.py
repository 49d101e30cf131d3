"""Issue 18 items 15 and 16: a save into a missing directory names it; a killed save leaves no orphan."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from fnlearn import checkpoint
from fnlearn.checkpoint import _archive

REPO = Path(__file__).resolve().parents[1]
TREE = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": 3}


def test_a_save_into_a_missing_directory_names_the_directory(tmp_path):
    target = tmp_path / "runs" / "ckpt.npz"
    with pytest.raises(FileNotFoundError) as info:
        checkpoint.save(target, TREE)
    message = str(info.value)
    assert f"the directory {tmp_path / 'runs'} does not exist" in message and "os.makedirs" in message
    assert ".tmp" not in message


def test_a_save_below_a_file_says_it_is_not_a_directory(tmp_path):
    (tmp_path / "runs").write_text("a file")
    with pytest.raises(NotADirectoryError, match="is not a directory"):
        checkpoint.save(tmp_path / "runs" / "ckpt.npz", TREE)


def _killed_writer(target: Path) -> str:
    """Start a process that dies (SIGKILL) in the middle of saving ``target``; its temp file stays."""
    code = textwrap.dedent(f"""
        import os, signal
        import numpy as np
        from fnlearn.checkpoint import _archive

        def write(f):
            f.write(b"PK" + bytes(100_000))
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        _archive.atomic_write({str(target)!r}, write)
    """)
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr
    orphans = [p.name for p in target.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(orphans) == 1, orphans
    return orphans[0]


def test_the_next_save_removes_the_temp_file_of_a_killed_writer(tmp_path):
    target = tmp_path / "ckpt.npz"
    orphan = _killed_writer(target)
    assert orphan.startswith(".ckpt.npz.") and (tmp_path / orphan).stat().st_size >= 100_000
    checkpoint.save(target, TREE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.npz"]
    assert checkpoint.load(target)["step"] == 3


def test_temp_files_of_live_writers_other_hosts_and_other_targets_are_kept(tmp_path):
    target = tmp_path / "ckpt.npz"
    orphan = _killed_writer(target)
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        host = _archive._HOST
        other_host = "0" * 8 if host != "0" * 8 else "1" * 8
        dead_pid = orphan.split(".")[3].split("-")[0]
        keep = [f".ckpt.npz.{live.pid}-{host}.abc123.tmp",          # a writer that still runs
                f".ckpt.npz.{dead_pid}-{other_host}.abc123.tmp",    # another host on a shared disk
                f".other.npz.{dead_pid}-{host}.abc123.tmp",         # another target
                ".ckpt.npz.abc123.tmp", "notes.txt"]                # not named by atomic_write
        for name in keep:
            (tmp_path / name).write_bytes(b"x")
        assert _archive.remove_stale_temps(target) == [orphan]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)
    finally:
        live.kill()
        live.wait()


def test_keys_holding_a_nul_character_round_trip(tmp_path):
    # zip member names end at a NUL; found by hypothesis in test_checkpoint's round trip ({'\x00': ...})
    tree = {"\x00": np.array(False), "a\x00b": {"w": np.ones(2, np.float32)}, "a\\x00b": np.zeros(1)}
    checkpoint.save(tmp_path / "ckpt.npz", tree)
    back = checkpoint.load(tmp_path / "ckpt.npz", like=tree)
    assert list(back) == list(tree) and back["a\x00b"]["w"].dtype == np.float32
