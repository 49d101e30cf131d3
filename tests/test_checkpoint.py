"""fnlearn.checkpoint: exact round trips, atomic writes, template checks, and hostile files."""

from __future__ import annotations

import collections
import io
import json
import os
import struct
import tempfile
import zipfile

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import fnlearn as fl
from fnlearn import checkpoint
from fnlearn.checkpoint import CheckpointError, _archive

# ---------------------------------------------------------------------------------------- helpers

DTYPES = ["?", "i1", "u1", "<i2", ">i4", "<i8", "<u8", "<f2", "<f4", ">f4", "<f8", "<c8", "<c16",
          "<U3", "S2", "<M8[s]"]


def assert_identical(a, b, path="<root>"):
    """``a`` and ``b`` are the same tree leaf for leaf: types, dict order, dtypes, shapes and bytes."""
    assert type(a) is type(b), f"{path}: {type(a)} != {type(b)}"
    if isinstance(a, dict):
        assert list(a) == list(b), path
        for k in a:
            assert_identical(a[k], b[k], f"{path}/{k}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            assert_identical(x, y, f"{path}/{i}")
    elif isinstance(a, (np.ndarray, np.generic)):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        assert a.tobytes() == b.tobytes(), path
    elif isinstance(a, float):
        assert struct.pack("<d", a) == struct.pack("<d", b), path
    else:
        assert a == b, path


def np_leaves():
    arrays = st.sampled_from(DTYPES).flatmap(lambda dt: hnp.arrays(
        np.dtype(dt), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)))
    scalars = st.sampled_from(["?", "<i8", "u1", "<f4", "<f8", "<c16"]).flatmap(
        lambda dt: hnp.from_dtype(np.dtype(dt)).map(lambda v: np.dtype(dt).type(v)))
    return arrays | scalars


python_leaves = (st.integers(min_value=-(2**130), max_value=2**130) | st.floats() | st.booleans()
                 | st.text(max_size=5))
keys = st.text(alphabet=st.characters(blacklist_characters="/", blacklist_categories=("Cs",)),
               max_size=6).filter(lambda k: k not in ("__manifest__", "__root__"))
trees = st.recursive(
    np_leaves() | python_leaves | st.none(),
    lambda children: (st.dictionaries(keys, children, max_size=4)
                      | st.lists(children, max_size=3) | st.lists(children, max_size=3).map(tuple)),
    max_leaves=10)


def saved(tree, directory, name="ckpt.npz", **kw):
    path = os.path.join(directory, name)
    checkpoint.save(path, tree, **kw)
    return path


def example_tree():
    rng = np.random.default_rng(0)
    return {"params": {"0": {"w": rng.normal(size=(3, 4)).astype(np.float32),
                             "b": np.zeros(4, np.float32)}, "1": {}},
            "opt": {"count": 7, "mu": ({"0": {"w": np.ones((3, 4)), "b": np.ones(4)}, "1": {}},)},
            "step": 7, "rng": rng.bit_generator.state}


def write_zip(path, members, compression=zipfile.ZIP_STORED):
    """A zip whose members are ``name -> bytes`` (a hand-made, possibly hostile, file)."""
    with zipfile.ZipFile(path, "w", compression=compression) as zf:
        for name, data in members.items():
            zf.writestr(name, data)


def npy_bytes(arr, allow_pickle=False):
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, allow_pickle=allow_pickle)
    return buf.getvalue()


def with_manifest(path, manifest, arrays=()):
    """An npz holding ``manifest`` (a dict, or raw bytes) as the manifest member and ``arrays``."""
    raw = manifest if isinstance(manifest, bytes) else json.dumps(manifest).encode()
    members = [("__manifest__", np.frombuffer(raw, np.uint8))] + list(arrays)
    with open(path, "wb") as f:
        _archive.write_npz(f, members)
    return path


# -------------------------------------------------------------------------------------- round trip

@given(trees)
def test_round_trip_is_exact(tree):
    with tempfile.TemporaryDirectory() as d:
        path = saved(tree, d)
        assert_identical(checkpoint.load(path), tree)
        assert_identical(checkpoint.load(path, like=tree), tree)


@given(trees)
def test_same_tree_gives_the_same_bytes(tree):
    with tempfile.TemporaryDirectory() as d:
        a, b = saved(tree, d, "a.npz"), saved(tree, d, "b.npz")
        assert open(a, "rb").read() == open(b, "rb").read()


def test_training_state_round_trip_and_rng_continues(tmp_path):
    state = example_tree()
    state["mt"] = np.random.Generator(np.random.MT19937(3)).bit_generator.state
    path = saved(state, tmp_path, metadata={"epoch": 2, "note": "after warmup"})
    loaded = checkpoint.load(path, like=state)
    assert_identical(loaded, state)
    assert checkpoint.load_metadata(path) == {"epoch": 2, "note": "after warmup"}
    rng_a, rng_b = np.random.default_rng(), np.random.default_rng()
    rng_a.bit_generator.state, rng_b.bit_generator.state = state["rng"], loaded["rng"]
    np.testing.assert_array_equal(rng_a.random(5), rng_b.random(5))


@pytest.mark.parametrize("make", [
    lambda: np.random.default_rng(3),
    lambda: np.random.default_rng([1, 2**80]),
    lambda: np.random.default_rng(3).spawn(3)[2],
    lambda: np.random.Generator(np.random.MT19937(4)),
    lambda: np.random.Generator(np.random.Philox(5)),
    lambda: np.random.Generator(np.random.SFC64(6)),
])
def test_generator_state_resumes_draws_and_spawns_exactly(tmp_path, make):
    rng = make()
    rng.random(3)
    rng.spawn(2)
    path = saved({"rng": checkpoint.generator_state(rng)}, tmp_path)
    twin = checkpoint.generator_from_state(checkpoint.load(path)["rng"])
    np.testing.assert_array_equal(rng.random(4), twin.random(4))
    for a, b in zip(rng.spawn(2), twin.spawn(2)):
        np.testing.assert_array_equal(a.integers(0, 2**62, 3), b.integers(0, 2**62, 3))


def test_bit_generator_state_alone_does_not_reproduce_spawned_children():
    """Why generator_state exists: fl.serial hands layers rng.spawn(n) children."""
    rng = np.random.default_rng(0)
    other = np.random.default_rng(1)
    other.bit_generator.state = rng.bit_generator.state
    assert rng.random() == other.random()
    assert rng.spawn(1)[0].random() != other.spawn(1)[0].random()


@pytest.mark.parametrize("state", [{}, {"bit_generator": "os.system", "state": {}, "seed_seq": None},
                                   {"bit_generator": "PCG64", "state": {"x": 1}, "seed_seq": None},
                                   {"bit_generator": "PCG64", "state": {}, "seed_seq": {"entropy": 1}}])
def test_generator_from_a_malformed_state_is_refused(state):
    with pytest.raises(CheckpointError, match="generator_from_state"):
        checkpoint.generator_from_state(state)


def test_generator_state_needs_a_generator():
    with pytest.raises(TypeError, match="numpy.random.Generator"):
        checkpoint.generator_state(np.random.RandomState(0))


def test_loaded_arrays_are_writable_and_independent(tmp_path):
    path = saved({"w": np.ones(3)}, tmp_path)
    w = checkpoint.load(path)["w"]
    w[0] = 5.0
    assert checkpoint.load(path)["w"][0] == 1.0


def test_namedtuples_come_back_as_tuples_or_as_the_template_type(tmp_path):
    State = collections.namedtuple("State", "count mu")
    tree = State(3, np.arange(2.0))
    path = saved(tree, tmp_path)
    assert type(checkpoint.load(path)) is tuple
    restored = checkpoint.load(path, like=State(0, np.zeros(2)))
    assert type(restored) is State and restored.count == 3


def test_npz_is_readable_by_numpy_without_pickle(tmp_path):
    path = saved(example_tree(), tmp_path)
    with np.load(path, allow_pickle=False) as z:
        assert {"params/0/w", "params/0/b", "opt/mu/0/0/w", "__manifest__"} <= set(z.files)
        np.testing.assert_array_equal(z["params/0/w"], example_tree()["params"]["0"]["w"])


# -------------------------------------------------------------------------------------- templates

def test_template_mismatch_names_every_problem(tmp_path):
    tree = {"0": {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)},
            "2": {"w": np.zeros((3, 1), np.float32)}, "step": 1}
    path = saved(tree, tmp_path)
    like = {"0": {"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float64),
                  "gamma": np.zeros(3, np.float32)},
            "1": {"w": np.zeros(1)}, "step": 1.0}
    with pytest.raises(CheckpointError) as err:
        checkpoint.load(path, like=like)
    msg = str(err.value)
    for needle in ["missing '0/gamma'", "missing '1'", "extra '2'", "shape '0/w'", "(3, 2)",
                   "(2, 3)", "dtype '0/b'", "float64", "kind 'step'", "6 problems"]:
        assert needle in msg, needle


def test_template_list_versus_tuple_and_leaf_versus_node(tmp_path):
    path = saved({"a": [np.ones(1)], "b": np.ones(2)}, tmp_path)
    with pytest.raises(CheckpointError, match=r"'a': expected a tuple.*\n.*'b': expected a dict"):
        checkpoint.load(path, like={"a": (np.ones(1),), "b": {"x": np.ones(2)}})


# -------------------------------------------------------------------------------- atomic writes

def test_failed_write_leaves_old_checkpoint_and_no_temp_file(tmp_path, monkeypatch):
    path = saved(example_tree(), tmp_path)
    before = open(path, "rb").read()
    real_write = np.lib.format.write_array
    calls = []

    def fail_midway(fp, arr, **kw):
        calls.append(1)
        if len(calls) == 3:
            fp.write(b"partial bytes")
            raise OSError("disk full (simulated)")
        real_write(fp, arr, **kw)

    monkeypatch.setattr(np.lib.format, "write_array", fail_midway)
    new = example_tree()
    new["step"] = 8
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save(path, new)
    assert len(calls) == 3
    assert open(path, "rb").read() == before
    assert os.listdir(tmp_path) == ["ckpt.npz"]
    assert checkpoint.load(path)["step"] == 7


def test_failed_fsync_leaves_old_checkpoint(tmp_path, monkeypatch):
    path = saved({"step": 1}, tmp_path)
    before = open(path, "rb").read()

    def no_fsync(fd):
        raise OSError("fsync failed (simulated)")

    monkeypatch.setattr(os, "fsync", no_fsync)
    with pytest.raises(OSError, match="simulated"):
        checkpoint.save(path, {"step": 2})
    assert open(path, "rb").read() == before and os.listdir(tmp_path) == ["ckpt.npz"]


# ------------------------------------------------------------------------------ refused on save

class _Flag:
    """Unpickling this object sets a flag: it proves whether a load ever ran pickle."""
    hit = False


def _set_flag():
    _Flag.hit = True
    return _Flag()


class _Bomb:
    def __reduce__(self):
        return (_set_flag, ())


@pytest.mark.parametrize("leaf, needle", [
    (np.array([{}, 1], dtype=object), "dtype object"),
    (np.zeros(2, dtype=[("a", "<f4")]), "dtype"),
    ({1, 2}, "type set"),
    (object(), "type object"),
    (1j, "type complex"),
    (b"raw", "type bytes"),
])
def test_unsupported_leaves_are_refused(tmp_path, leaf, needle):
    with pytest.raises(CheckpointError, match=needle):
        checkpoint.save(tmp_path / "x.npz", {"a": {"b": leaf}})
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("tree, needle", [
    ({(1, 2): np.ones(1)}, "keys must be str or int"),
    ({"a/b": np.ones(1), "a": {"b": np.ones(1)}}, "share the path 'a/b'"),
    ({"__manifest__": np.ones(1)}, "reserved"),
])
def test_bad_keys_are_refused(tmp_path, tree, needle):
    with pytest.raises(CheckpointError, match=needle):
        checkpoint.save(tmp_path / "x.npz", tree)


@pytest.mark.parametrize("metadata", [{"x": float("nan")}, {"x": object()}, [1, 2]])
def test_bad_metadata_is_refused(tmp_path, metadata):
    with pytest.raises(CheckpointError, match="metadata"):
        checkpoint.save(tmp_path / "x.npz", {}, metadata=metadata)


# ------------------------------------------------------------------------------ hostile files

@given(st.data())
def test_any_bit_flip_is_detected_or_harmless(data):
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": 3, "s": (None, 2.5)}
    with tempfile.TemporaryDirectory() as d:
        path = saved(tree, d)
        raw = bytearray(open(path, "rb").read())
        bit = data.draw(st.integers(0, len(raw) * 8 - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
        open(path, "wb").write(bytes(raw))
        try:
            loaded = checkpoint.load(path)
        except CheckpointError:
            return
        assert_identical(loaded, tree)  # the flip hit a byte that carries no data (e.g. a timestamp)


def test_a_bit_flip_in_every_byte_is_detected_or_harmless(tmp_path):
    tree = {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "step": 3}
    path = saved(tree, tmp_path)
    raw = open(path, "rb").read()
    outcomes = {"refused": 0, "identical": 0}
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] ^= 1 << (i % 8)
        open(path, "wb").write(bytes(bad))
        try:
            loaded = checkpoint.load(path)
        except CheckpointError:
            outcomes["refused"] += 1
            continue
        assert_identical(loaded, tree)
        outcomes["identical"] += 1
    assert outcomes["refused"] > 0.7 * len(raw)  # most bytes matter; the rest are e.g. timestamps


@given(st.data())
def test_any_truncation_is_detected(data):
    with tempfile.TemporaryDirectory() as d:
        path = saved(example_tree(), d)
        raw = open(path, "rb").read()
        n = data.draw(st.integers(0, len(raw) - 1))
        open(path, "wb").write(raw[:n])
        with pytest.raises(CheckpointError):
            checkpoint.load(path)


def test_every_single_byte_of_array_data_is_covered_by_the_checksum(tmp_path):
    tree = {"w": np.arange(4, dtype=np.float64)}
    path = saved(tree, tmp_path)
    raw = open(path, "rb").read()
    start = raw.index(tree["w"].tobytes())
    for i in range(start, start + tree["w"].nbytes):
        bad = bytearray(raw)
        bad[i] ^= 0xFF
        open(path, "wb").write(bytes(bad))
        with pytest.raises(CheckpointError, match="corrupted|checksum|CRC"):
            checkpoint.load(path)


@pytest.mark.parametrize("content", [
    b"", b"\x89PNG\r\n\x1a\n" + bytes(64), b"hello, I am a text file\n", b"PK\x03\x04" + bytes(30),
    bytes(range(256)) * 4, b"\x93NUMPY\x01\x00" + bytes(100),
])
def test_foreign_files_are_refused(tmp_path, content):
    path = tmp_path / "foreign.npz"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match="foreign.npz"):
        checkpoint.load(path)


def test_missing_file_is_a_file_not_found_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "nope.npz")


def test_plain_npz_with_pickled_objects_is_refused_without_unpickling(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, a=np.array([_Bomb()], dtype=object))
    with pytest.raises(CheckpointError, match="no fnlearn checkpoint|has none"):
        checkpoint.load(path)
    assert not _Flag.hit


def test_checkpoint_with_a_pickled_member_is_refused_without_unpickling(tmp_path):
    path = saved({"w": np.ones(3)}, tmp_path)
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    members["w.npy"] = npy_bytes(np.array([_Bomb(), 1, 2], dtype=object), allow_pickle=True)
    write_zip(path, members)
    with pytest.raises(CheckpointError):
        checkpoint.load(path)
    assert not _Flag.hit


def test_zip_bomb_shaped_manifest_is_refused_before_reading(tmp_path):
    path = tmp_path / "bomb.npz"
    write_zip(path, {"__manifest__.npy": npy_bytes(np.zeros(5_000_000, np.uint8))},
              compression=zipfile.ZIP_DEFLATED)
    assert os.path.getsize(path) < 100_000
    with pytest.raises(CheckpointError, match="compressed"):
        checkpoint.load(path)


def test_huge_declared_member_size_is_refused_before_reading(tmp_path):
    path = tmp_path / "liar.npz"
    write_zip(path, {"__manifest__.npy": npy_bytes(np.zeros(10, np.uint8))})
    raw = bytearray(path.read_bytes())
    central = raw.index(b"PK\x01\x02")
    raw[central + 20:central + 28] = struct.pack("<II", 2**31 - 1, 2**31 - 1)  # both sizes
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="declares 2147483647 bytes"):
        checkpoint.load(path)


def test_too_many_members_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(_archive, "MAX_MEMBERS", 5)
    path = tmp_path / "many.npz"
    write_zip(path, {f"{i}.npy": npy_bytes(np.zeros(1)) for i in range(6)})
    with pytest.raises(CheckpointError, match="declares 6 members"):
        checkpoint.load(path)


def test_unlisted_member_is_refused(tmp_path):
    path = saved({"w": np.ones(3)}, tmp_path)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("sneaky.npy", npy_bytes(np.zeros(2)))
    with pytest.raises(CheckpointError, match="do not match its manifest"):
        checkpoint.load(path)


def _manifest_of(tree, tmp_path):
    with np.load(saved(tree, tmp_path, "src.npz"), allow_pickle=False) as z:
        return json.loads(bytes(z["__manifest__"]).decode())


@pytest.mark.parametrize("mutate, needle", [
    (lambda m: b"{not json", "not valid JSON"),
    (lambda m: b"\xff\xfe", "not valid JSON"),
    (lambda m: b"[" * 100_000, "not valid JSON"),
    (lambda m: b'{"format": NaN}', "not valid JSON"),
    (lambda m: [1, 2], "not an fnlearn checkpoint manifest"),
    (lambda m: {**m, "format": "other"}, "not an fnlearn checkpoint manifest"),
    (lambda m: {**m, "version": 2}, "format version 2"),
    (lambda m: {**m, "version": True}, "format version True"),
    (lambda m: {k: v for k, v in m.items() if k != "sha256"}, "lacks"),
    (lambda m: {**m, "sha256": "0" * 64}, "checksum"),
    (lambda m: {**m, "metadata": {"evil": 1}}, "checksum"),
    (lambda m: {**m, "tree": {"t": "set"}}, "do not match its manifest|unknown"),
    (lambda m: {**m, "tree": "dict"}, "do not match its manifest|malformed"),
])
def test_malformed_manifests_are_refused(tmp_path, mutate, needle):
    manifest = _manifest_of({"w": np.ones(3)}, tmp_path)
    manifest = mutate(manifest)
    path = with_manifest(tmp_path / "bad.npz", manifest, [("w", np.ones(3))])
    with pytest.raises(CheckpointError, match=needle):
        checkpoint.load(path)


@pytest.mark.parametrize("node, needle", [
    ({"t": "array", "key": "w", "dtype": "|O", "shape": [3]}, "not a dtype"),
    ({"t": "array", "key": "w", "dtype": "|V8", "shape": [3]}, "not a dtype"),
    ({"t": "array", "key": "w", "dtype": "<f8", "shape": [-3]}, "non-negative"),
    ({"t": "array", "key": "w", "dtype": "<f8", "shape": [2**40, 2**20]}, "does not fit"),
    ({"t": "array", "key": "w", "dtype": "<f8", "shape": [1] * 65}, "at most 64"),
    ({"t": "array", "key": "w", "dtype": "<f4", "shape": [6]}, "manifest says"),
    ({"t": "npscalar", "key": "w", "dtype": "<f8", "shape": [3]}, "non-empty shape"),
    ({"t": "dict", "k": [["s", "a"]], "c": []}, "malformed dict keys"),
    ({"t": "dict", "k": [["s", "a"], ["s", "a"]], "c": [{"t": "none"}] * 2}, "duplicate"),
    ({"t": "list", "c": {"t": "none"}}, "no list of children"),
    ({"t": "int", "v": "12e3"}, "not a decimal"),
    ({"t": "float", "v": "zz"}, "malformed leaf"),
])
def test_malformed_tree_nodes_are_refused(tmp_path, node, needle):
    arrays = [("w", np.ones(3))] if node.get("key") == "w" else []
    manifest = {"format": "fnlearn.checkpoint", "version": 1, "tree": node, "metadata": None,
                "sha256": "0" * 64}
    path = with_manifest(tmp_path / "bad.npz", manifest, arrays)
    with pytest.raises(CheckpointError, match=needle):
        checkpoint.load(path)


# ------------------------------------------------------------------------------- exact resume

RESUME_SCRIPT = '''
"""Train a small MLP with sgd+momentum, dropout and shuffled batches; resume from a checkpoint."""
import sys
import numpy as np
import fnlearn as fl
from fnlearn import checkpoint

MODEL = fl.serial(fl.Dense(16), fl.Relu(), fl.Dropout(0.25), fl.Dense(3))
OPTIMIZERS = {"sgd": lambda: fl.optim.sgd(0.05, momentum=0.9, weight_decay=1e-3),
              "adam": lambda: fl.optim.adam(0.01)}
GRAD = fl.value_and_grad(MODEL.apply, fl.losses.softmax_cross_entropy)
DATA = np.random.default_rng(123)
X = DATA.normal(size=(50, 4)).astype(np.float32)
Y = DATA.integers(0, 3, size=50)


def fresh(opt_name):
    rng = np.random.default_rng(7)
    params = MODEL.init(rng, (-1, 4))
    return {"params": params, "opt": OPTIMIZERS[opt_name]().init(params), "step": 0,
            "rng": checkpoint.generator_state(rng), "batches": []}


def train(opt_name, state, steps):
    """``steps`` more steps on batches drawn from the saved generator, which also draws dropout masks."""
    opt = OPTIMIZERS[opt_name]()
    rng = checkpoint.generator_from_state(state["rng"])
    params, opt_state, step = state["params"], state["opt"], state["step"]
    seen = list(state["batches"])
    for _ in range(steps):
        idx = rng.choice(len(X), size=8, replace=False)
        loss, grads = GRAD(params, X[idx], Y[idx], rng=rng)
        updates, opt_state = opt.update(grads, opt_state, params)
        params = fl.optim.apply_updates(params, updates)
        step += 1
        seen.append(int(idx.sum()))
    return {"params": params, "opt": opt_state, "step": step, "rng": checkpoint.generator_state(rng),
            "batches": seen}


if __name__ == "__main__":
    src, steps, dst, opt_name = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    template = fresh(opt_name)
    template["batches"] = checkpoint.load(src)["batches"]  # a list whose length grows with the run
    state = checkpoint.load(src, like=template)  # validates paths, kinds, shapes and dtypes
    checkpoint.save(dst, train(opt_name, state, steps))
'''


@pytest.mark.parametrize("opt_name", ["sgd", "adam"])
def test_resume_in_a_new_process_is_bit_identical(tmp_path, opt_name):
    import runpy
    import subprocess
    import sys

    script = tmp_path / "resume.py"
    script.write_text(RESUME_SCRIPT)
    run = runpy.run_path(str(script), run_name="resume_module")
    n, m = 7, 6
    first = run["train"](opt_name, run["fresh"](opt_name), n)
    checkpoint.save(tmp_path / "after_n.npz", first)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(fl.__file__)))]  # the checkout
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    subprocess.run([sys.executable, str(script), str(tmp_path / "after_n.npz"), str(m),
                    str(tmp_path / "resumed.npz"), opt_name], check=True, env=env, timeout=300)
    resumed = checkpoint.load(tmp_path / "resumed.npz")
    straight = run["train"](opt_name, run["fresh"](opt_name), n + m)
    assert resumed["step"] == straight["step"] == n + m
    assert resumed["batches"] == straight["batches"]
    assert_identical(resumed, straight)
    # and the run really trained: the parameters moved and the momentum buffers are non-zero
    start = run["fresh"](opt_name)
    assert not np.array_equal(straight["params"]["0"]["w"], start["params"]["0"]["w"])
    assert not any(np.array_equal(a, b) for a, b in zip(fl.tree.tree_leaves(straight["opt"]),
                                                        fl.tree.tree_leaves(start["opt"])))
