"""Issue 18 item 17: a flipped tensor byte in a .safetensors file is caught by fnlearn's checksum."""

import json

import numpy as np
import pytest

from fnlearn import interop
from fnlearn.checkpoint import CheckpointError

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="the interop extra (safetensors) is not installed")

PARAMS = {"0": {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.ones(4, np.float64)},
          "1": {}, "2": {"mask": np.array([True, False]), "step": np.array(7, np.int64)}}


def _data_start(raw: bytes) -> int:
    return 8 + int.from_bytes(raw[:8], "little")


def test_every_flipped_data_byte_is_refused(tmp_path):
    path = tmp_path / "p.safetensors"
    interop.save_safetensors(path, PARAMS)
    raw = path.read_bytes()
    start = _data_start(raw)
    assert len(raw) - start == 12 * 4 + 4 * 8 + 2 + 8
    for i in range(start, len(raw)):
        damaged = bytearray(raw)
        damaged[i] ^= 0x10
        path.write_bytes(bytes(damaged))
        with pytest.raises(CheckpointError, match="checksum"):
            interop.load_safetensors(path)


def test_a_good_file_round_trips_with_its_checksum_entry(tmp_path):
    path = tmp_path / "p.safetensors"
    interop.save_safetensors(path, PARAMS, metadata={"epoch": "3"})
    raw = path.read_bytes()
    meta = json.loads(raw[8:_data_start(raw)])["__metadata__"]
    assert len(meta[interop.STRUCTURE_KEY]) and len(meta["fnlearn.sha256"]) == 64 and meta["epoch"] == "3"
    back = interop.load_safetensors(path, require_checksum=True)
    np.testing.assert_array_equal(back["0"]["w"], PARAMS["0"]["w"])
    assert back["2"]["step"].dtype == np.int64 and back["1"] == {}


def test_a_file_without_a_checksum_loads_unverified_unless_required(tmp_path):
    path = tmp_path / "foreign.safetensors"
    path.write_bytes(safetensors_numpy.save({"0.weight": np.ones((2, 2), np.float32)}))
    assert set(interop.load_safetensors(path)) == {"0.weight"}
    with pytest.raises(CheckpointError, match="no 'fnlearn.sha256' entry"):
        interop.load_safetensors(path, require_checksum=True)
