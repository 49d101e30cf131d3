"""fnlearn.interop: safetensors round trips, hostile files, and PyTorch nn.Linear names and layouts."""

from __future__ import annotations

import json
import os
import tempfile

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import fnlearn as fl
from fnlearn import interop
from fnlearn.checkpoint import CheckpointError

safetensors_numpy = pytest.importorskip("safetensors.numpy", reason="the interop extra is not installed")

DTYPES = ["?", "u1", "i1", "<i2", "<u2", "<i4", "<u4", "<i8", "<u8", "<f2", "<f4", "<f8"]
arrays = st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
    np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
keys = st.text(alphabet="abcwxyz019_.-", min_size=1, max_size=4)
params_trees = st.recursive(arrays, lambda kids: st.dictionaries(keys, kids, max_size=4),
                            max_leaves=8).filter(lambda t: isinstance(t, dict))


def assert_same_params(a, b):
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert list(a) == list(b)
        for k in a:
            assert_same_params(a[k], b[k])
    else:
        assert a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


# -------------------------------------------------------------------------------------- safetensors

@given(params_trees)
def test_safetensors_round_trip_is_exact_and_keeps_nesting_and_order(params):
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "p.safetensors")
        interop.save_safetensors(path, params)
        assert_same_params(interop.load_safetensors(path), params)


def test_safetensors_metadata_and_empty_entries(tmp_path):
    params = {"0": {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float32)}, "1": {}}
    path = tmp_path / "p.safetensors"
    interop.save_safetensors(path, params, metadata={"step": "12"})
    assert_same_params(interop.load_safetensors(path), params)
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    assert header["__metadata__"]["step"] == "12"
    assert header["0/w"]["shape"] == [2, 3] and header["0/w"]["dtype"] == "F32"


def test_a_file_written_elsewhere_loads_flat(tmp_path):
    path = tmp_path / "torch.safetensors"
    weight = np.arange(6, dtype=np.float32).reshape(3, 2)
    safetensors_numpy.save_file({"0.weight": weight, "0.bias": np.zeros(3, np.float32)}, path)
    loaded = interop.load_safetensors(path)
    assert sorted(loaded) == ["0.bias", "0.weight"]
    np.testing.assert_array_equal(loaded["0.weight"], weight)


@pytest.mark.parametrize("params, error, needle", [
    ({"a": [np.ones(2)]}, TypeError, "'a' is a list"),
    ({"a": 1.0}, TypeError, "'a' is a float"),
    (np.ones(2), TypeError, "<root>"),
    ({"a/b": np.ones(2)}, ValueError, "without '/'"),
    ({"": np.ones(2)}, ValueError, "non-empty"),
    ({"a": np.array(["x"])}, CheckpointError, "could not store"),
    ({"a": np.array([{}], dtype=object)}, CheckpointError, "could not store"),
])
def test_save_safetensors_refuses_what_it_cannot_store(tmp_path, params, error, needle):
    with pytest.raises(error, match=needle):
        interop.save_safetensors(tmp_path / "x.safetensors", params)
    assert os.listdir(tmp_path) == []


def _valid_bytes(tmp_path):
    path = tmp_path / "ok.safetensors"
    interop.save_safetensors(path, {"0": {"w": np.ones((2, 3), np.float32)}, "1": {}})
    return path.read_bytes()


@pytest.mark.parametrize("corrupt", [
    lambda raw: b"",
    lambda raw: b"\x89PNG\r\n\x1a\n" + bytes(100),
    lambda raw: raw[:len(raw) // 2],
    lambda raw: raw[:-1],
    lambda raw: (2**40).to_bytes(8, "little") + raw[8:],
    lambda raw: raw[:8] + b"[" + raw[9:],
    lambda raw: raw.replace(b'"F32"', b'"Q32"'),
    lambda raw: raw.replace(b'"0/w"', b'"0/v"'),
    lambda raw: raw.replace(b"fnlearn.structure", b"fnlearn.structurX"),  # loads flat: not an error
])
def test_corrupted_safetensors_files_are_refused(tmp_path, corrupt):
    bad = corrupt(_valid_bytes(tmp_path))
    path = tmp_path / "bad.safetensors"
    path.write_bytes(bad)
    if b"structurX" in bad:
        assert list(interop.load_safetensors(path)) == ["0/w"]
        return
    with pytest.raises(CheckpointError, match="bad.safetensors"):
        interop.load_safetensors(path)


def test_missing_safetensors_gives_a_clear_import_error(monkeypatch, tmp_path):
    import builtins
    real_import = builtins.__import__

    def no_safetensors(name, *args, **kwargs):
        if name.startswith("safetensors"):
            raise ImportError("no module named safetensors")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_safetensors)
    with pytest.raises(ImportError, match=r"pip install 'fnlearn\[interop\]'"):
        interop.save_safetensors(tmp_path / "x.safetensors", {"w": np.ones(1)})


# ------------------------------------------------------------------------ torch names and layouts

def test_names_and_layouts_without_torch():
    w = np.arange(6, dtype=np.float32).reshape(2, 3)  # (in=2, out=3)
    params = {"0": {"w": w, "b": np.array([1, 2, 3], np.float32)}, "1": {},
              "2": {"w": np.ones((3, 1), np.float32), "b": np.zeros(1, np.float32)}}
    sd = interop.to_torch_linear_state_dict(params)
    assert list(sd) == ["0.weight", "0.bias", "2.weight", "2.bias"]
    np.testing.assert_array_equal(sd["0.weight"], w.T)
    assert sd["0.weight"].flags.c_contiguous and sd["0.weight"].shape == (3, 2)
    back = interop.from_torch_linear_state_dict(sd)
    assert list(back) == ["0", "1", "2"] and back["1"] == {}
    assert_same_params(back, params)


def test_from_torch_with_a_template_fills_parameterless_layers_and_names_every_problem():
    model = fl.serial(fl.Dense(4), fl.Relu(), fl.Dense(2), fl.Softmax())
    like = model.init(np.random.default_rng(0), (-1, 3))
    sd = interop.to_torch_linear_state_dict(like)
    back = interop.from_torch_linear_state_dict(sd, like=like)
    assert list(back) == ["0", "1", "2", "3"] and back["3"] == {}
    assert_same_params(back, like)
    wrong = dict(sd, **{"0.weight": np.ones((5, 3), np.float32), "4.bias": np.ones(1, np.float32)})
    del wrong["2.bias"]
    with pytest.raises(ValueError) as err:
        interop.from_torch_linear_state_dict(wrong, like=like)
    for needle in ["shape '0/w'", "missing '2/b'", "extra '4'", "3 problems"]:
        assert needle in str(err.value), needle


@pytest.mark.parametrize("sd, needle", [
    ({"0.running_mean": np.ones(3)}, "not an nn.Linear parameter"),
    ({"0.weight": np.ones(3)}, "not an nn.Linear parameter"),
    ({"weight": np.ones((2, 2))}, "not an nn.Linear parameter"),
])
def test_from_torch_refuses_non_linear_entries(sd, needle):
    with pytest.raises(ValueError, match=needle):
        interop.from_torch_linear_state_dict(sd)


@pytest.mark.parametrize("params", [{"0": {"gamma": np.ones(3)}}, {"0": {"w": np.ones(3)}},
                                    {"a.b": {"w": np.ones((2, 2))}}])
def test_to_torch_refuses_non_dense_params(params):
    with pytest.raises(ValueError, match="not a Dense parameter"):
        interop.to_torch_linear_state_dict(params)


def test_huge_integer_names_do_not_allocate_gaps():
    back = interop.from_torch_linear_state_dict({"999999999.bias": np.ones(1)})
    assert list(back) == ["999999999"]


# ------------------------------------------------------------------------- with torch installed

def _torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install torch==2.13.0)")


def _mlp_pair(torch):
    model = fl.serial(fl.Dense(16), fl.Relu(), fl.Dense(8), fl.Tanh(), fl.Dense(3))
    net = torch.nn.Sequential(torch.nn.Linear(5, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8),
                              torch.nn.Tanh(), torch.nn.Linear(8, 3))
    return model, net


def test_fnlearn_weights_run_in_torch_with_the_same_outputs():
    torch = _torch()
    model, net = _mlp_pair(torch)
    params = model.init(np.random.default_rng(1), (-1, 5))
    sd = interop.to_torch_linear_state_dict(params)
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    x = np.random.default_rng(2).normal(size=(7, 5)).astype(np.float32)
    ours, _ = model.apply(params, x)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)


def test_torch_weights_run_in_fnlearn_with_the_same_outputs_via_safetensors(tmp_path):
    torch = _torch()
    safetensors_torch = pytest.importorskip("safetensors.torch")
    torch.manual_seed(0)
    model, net = _mlp_pair(torch)
    path = tmp_path / "torch.safetensors"
    safetensors_torch.save_file(net.state_dict(), str(path))
    like = model.init(np.random.default_rng(0), (-1, 5))
    params = interop.from_torch_linear_state_dict(interop.load_safetensors(path), like=like)
    x = np.random.default_rng(3).normal(size=(4, 5)).astype(np.float32)
    ours, _ = model.apply(params, x)
    with torch.no_grad():
        theirs = net(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(ours, theirs, rtol=1e-5, atol=1e-6)
    # and back: an fnlearn-written safetensors file of torch names loads into torch
    out = tmp_path / "fnlearn.safetensors"
    interop.save_safetensors(out, interop.to_torch_linear_state_dict(params))
    net2 = _mlp_pair(torch)[1]
    net2.load_state_dict(safetensors_torch.load_file(str(out)))
    with torch.no_grad():
        np.testing.assert_array_equal(net2(torch.from_numpy(x)).numpy(), theirs)
