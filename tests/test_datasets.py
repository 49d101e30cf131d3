"""fnlearn.datasets: the IDX parser, the real MNIST files, and the downloader against a local server."""

import gzip
import hashlib
import http.server
import socket
import struct
import sys
import threading

import numpy as np
import pytest

from fnlearn import datasets
from fnlearn.datasets import DatasetError, DownloadError, mnist, parse_idx, read_idx

# Label counts of the real MNIST splits (a property of the data set, known independently of our code).
TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def idx_bytes(arr, code=0x08):
    """An IDX file written with struct, independently of the parser under test."""
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


# ----------------------------------------------------------------------------------------- IDX parser
@pytest.mark.parametrize("dtype,code", [(np.uint8, 0x08), (np.int8, 0x09), (np.int16, 0x0B),
                                        (np.int32, 0x0C), (np.float32, 0x0D), (np.float64, 0x0E)])
def test_parse_idx_round_trips_each_dtype(dtype, code):
    arr = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    out = parse_idx(idx_bytes(arr, code))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, arr)
    out[0, 0, 0] = 1  # writable


def test_read_idx_reads_gzipped_and_plain_files(tmp_path):
    arr = np.arange(12, dtype=np.uint8).reshape(3, 4)
    (tmp_path / "a").write_bytes(idx_bytes(arr))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_bytes(arr)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz"), arr)


@pytest.mark.parametrize("data,match", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x07", "magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x07", "dtype code"),
    (b"\x00\x00\x08\x02\x00\x00\x00\x01", "header"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x07\x07", "truncated"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x07", "longer"),
    (b"", "magic"),
])
def test_parse_idx_rejects_malformed_files_naming_them(data, match):
    with pytest.raises(DatasetError, match=match) as info:
        parse_idx(data, "some-file-name")
    assert "some-file-name" in str(info.value)


def test_read_idx_names_a_truncated_gzip_file(tmp_path):
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros((50, 50), np.uint8)))[:20])
    with pytest.raises(DatasetError, match="cut.gz"):
        read_idx(path)


# ----------------------------------------------------------------------------------------- real files
def test_real_mnist_splits(mnist_dir):
    for split, counts in [("train", TRAIN_COUNTS), ("test", TEST_COUNTS)]:
        images, labels = mnist(split, mnist_dir, mirrors=(), download=False)
        n = sum(counts)
        assert images.shape == (n, 28, 28) and images.dtype == np.uint8
        assert labels.shape == (n,) and labels.dtype == np.uint8
        assert np.bincount(labels, minlength=10).tolist() == counts
        assert images.min() == 0 and images.max() == 255
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]


def test_data_dir_defaults_to_the_environment_variable(mnist_dir, monkeypatch):
    monkeypatch.setenv("FNLEARN_DATA_DIR", str(mnist_dir))
    images, _ = mnist("test", download=False)
    assert images.shape == (10000, 28, 28)


def test_gunzipped_real_file_loads_and_a_changed_byte_is_caught(mnist_dir, tmp_path):
    for name in datasets.MNIST_FILES["test"]:
        raw = gzip.decompress((mnist_dir / name).read_bytes())
        (tmp_path / name.removesuffix(".gz")).write_bytes(raw)
    _, labels = mnist("test", tmp_path, download=False)
    np.testing.assert_array_equal(labels, mnist("test", mnist_dir, download=False)[1])
    path = tmp_path / "t10k-labels-idx1-ubyte"
    raw = bytearray(path.read_bytes())
    raw[100] = (raw[100] + 1) % 10  # still a valid IDX file with labels in 0..9: only the hash can tell
    path.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.*sha256"):
        mnist("test", tmp_path, download=False)


def test_default_data_dir_order(monkeypatch, tmp_path):
    monkeypatch.setenv("FNLEARN_DATA_DIR", str(tmp_path / "env"))
    assert datasets.default_data_dir() == tmp_path / "env"
    monkeypatch.delenv("FNLEARN_DATA_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.default_data_dir() == tmp_path / "xdg" / "fnlearn" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.default_data_dir() == tmp_path / "home" / ".cache" / "fnlearn" / "mnist"


def test_unknown_split_is_an_error(tmp_path):
    with pytest.raises(ValueError, match="split must be one of"):
        mnist("validation", tmp_path)


# ----------------------------------------------------------------------- downloader, local HTTP server
@pytest.fixture
def fake():
    """Small fake MNIST files: gzipped bytes by name, the uncompressed sha256 table, and the arrays."""
    rng = np.random.default_rng(0)
    files, arrays = {}, {}
    for split, n in [("train", 7), ("test", 3)]:
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        arrays[split] = (images, labels)
        for name, arr in zip(datasets.MNIST_FILES[split], (images, labels)):
            files[name] = idx_bytes(arr)
    sha = {name: hashlib.sha256(raw).hexdigest() for name, raw in files.items()}
    return {name: gzip.compress(raw) for name, raw in files.items()}, sha, arrays


def _corrupt(gz):
    raw = bytearray(gzip.decompress(gz))
    raw[-1] ^= 0xFF
    return gzip.compress(bytes(raw))


@pytest.fixture
def server(fake):
    """A local server: /good/, /missing/ (404), /truncated/, /short/ (lying Content-Length), /corrupt/."""
    files = fake[0]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            _, mode, name = self.path.split("/", 2)
            if mode not in ("good", "truncated", "short", "corrupt") or name not in files:
                self.send_error(404)
                return
            body = {"good": files[name], "truncated": files[name][: len(files[name]) // 2],
                    "short": files[name], "corrupt": _corrupt(files[name])}[mode]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2] if mode == "short" else body)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def _load(data_dir, sha, *mirrors, split="train"):
    return mnist(split, data_dir, mirrors=mirrors, sha256=sha, progress=False)


def test_download_from_a_good_mirror_then_load_offline(server, fake, tmp_path):
    _, sha, arrays = fake
    data_dir = tmp_path / "new" / "dir"
    images, labels = _load(data_dir, sha, server + "/good/")
    np.testing.assert_array_equal(images, arrays["train"][0])
    np.testing.assert_array_equal(labels, arrays["train"][1])
    assert sorted(p.name for p in data_dir.iterdir()) == sorted(datasets.MNIST_FILES["train"])
    images, _ = _load(data_dir, sha)  # found files, verified, no mirror needed
    np.testing.assert_array_equal(images, arrays["train"][0])


def test_mirror_fallback_after_a_404(server, fake, tmp_path):
    _, sha, arrays = fake
    _, labels = _load(tmp_path, sha, server + "/missing/", server + "/good/", split="test")
    np.testing.assert_array_equal(labels, arrays["test"][1])


@pytest.mark.parametrize("mode,match", [("truncated", "gzip"), ("short", "bytes"),
                                        ("corrupt", "sha256"), ("missing", "404")])
def test_a_bad_download_is_an_error_and_leaves_no_file(server, fake, tmp_path, mode, match):
    with pytest.raises(DownloadError, match=match) as info:
        _load(tmp_path, fake[1], f"{server}/{mode}/")
    message = str(info.value)
    assert "train-images-idx3-ubyte.gz" in message and str(tmp_path) in message
    assert list(tmp_path.iterdir()) == []


def test_a_corrupt_mirror_falls_back_to_a_good_one(server, fake, tmp_path):
    _, sha, arrays = fake
    images, _ = _load(tmp_path, sha, server + "/corrupt/", server + "/good/")
    np.testing.assert_array_equal(images, arrays["train"][0])
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".part")]


def test_offline_error_lists_the_files_and_the_directory(fake, tmp_path):
    with socket.socket() as s:  # a port on which nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(DownloadError) as info:
        _load(tmp_path, fake[1], f"http://127.0.0.1:{port}/")
    message = str(info.value)
    for name in datasets.MNIST_FILES["train"]:
        assert name in message
    assert f"in {tmp_path}" in message and "FNLEARN_DATA_DIR" in message
    with pytest.raises(DownloadError, match="download=False.*t10k-images-idx3-ubyte.gz"):
        mnist("test", tmp_path, download=False)


def test_found_files_are_verified(fake, tmp_path):
    files, sha, _ = fake
    for name in datasets.MNIST_FILES["test"]:
        (tmp_path / name).write_bytes(files[name])
    mnist("test", tmp_path, sha256=sha, download=False)
    with pytest.raises(DatasetError, match="t10k-images-idx3-ubyte.gz.*sha256"):
        mnist("test", tmp_path, download=False)  # the real table: these fakes are not MNIST
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(files["t10k-labels-idx1-ubyte.gz"][:-9])
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte.gz"):
        mnist("test", tmp_path, sha256=sha, download=False)


def test_wrong_shapes_are_caught_even_when_the_hash_matches(tmp_path):
    files = {"t10k-images-idx3-ubyte.gz": idx_bytes(np.zeros((3, 28, 27), np.uint8)),
             "t10k-labels-idx1-ubyte.gz": idx_bytes(np.zeros(3, np.uint8))}
    for name, raw in files.items():
        (tmp_path / name).write_bytes(gzip.compress(raw))
    sha = {name: hashlib.sha256(raw).hexdigest() for name, raw in files.items()}
    with pytest.raises(DatasetError, match=r"\(n, 28, 28\)"):
        mnist("test", tmp_path, sha256=sha, download=False)


def test_plain_progress_without_tqdm(server, fake, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` raise ImportError
    mnist("test", tmp_path, mirrors=(server + "/good/",), sha256=fake[1], progress=True)
    err = capsys.readouterr().err
    assert "t10k-images-idx3-ubyte.gz: 100%" in err


def test_a_gzip_bomb_is_refused_before_it_fills_memory(tmp_path):
    from fnlearn.datasets._idx import read_uncompressed
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(bytes(10_000)))
    assert read_uncompressed(path) == bytes(10_000)
    with pytest.raises(datasets.DatasetError, match="expands to more than 1000 bytes"):
        read_uncompressed(path, max_bytes=1000)


def test_multi_member_gzip_files_are_read_whole_and_truncation_is_caught(tmp_path):
    from fnlearn.datasets._idx import read_uncompressed
    path = tmp_path / "two.gz"
    path.write_bytes(gzip.compress(b"abc") + gzip.compress(b"def"))
    assert read_uncompressed(path) == b"abcdef"
    path.write_bytes(gzip.compress(bytes(5000))[:-12])
    with pytest.raises(datasets.DatasetError, match="truncated"):
        read_uncompressed(path)
