"""The MNIST downloader against a local HTTP server on 127.0.0.1 serving test-made files."""

import gzip
import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from nnback.data.fetch import IDX_FILES, SHA256, fetch
from nnback.data.idx import idx_bytes, read_idx
from nnback.errors import DataError


class Handler(SimpleHTTPRequestHandler):
    """Serves a folder; records request paths; can cut one file short."""

    requests: list
    truncate: set

    def do_GET(self):
        self.requests.append(self.path.lstrip("/"))
        name = self.path.lstrip("/")
        if name in self.truncate:
            body = (self.directory_path / name).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    rng = np.random.default_rng(0)
    arrays = {"train_images": rng.integers(0, 256, (20, 28, 28), dtype=np.uint8),
              "train_labels": rng.integers(0, 10, 20, dtype=np.uint8),
              "test_images": rng.integers(0, 256, (5, 28, 28), dtype=np.uint8),
              "test_labels": rng.integers(0, 10, 5, dtype=np.uint8)}
    sums = {}
    for key, array in arrays.items():
        data = gzip.compress(idx_bytes(array), mtime=0)
        (served / IDX_FILES[key]).write_bytes(data)
        sums[IDX_FILES[key]] = hashlib.sha256(data).hexdigest()
    handler = type("TestHandler", (Handler,), {"requests": [], "truncate": set(),
                                               "directory_path": served})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(served)))
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    yield url, sums, handler, arrays
    httpd.shutdown()
    httpd.server_close()
    thread.join()


def test_downloads_verifies_and_skips(server, tmp_path):
    url, sums, handler, arrays = server
    dest = tmp_path / "mnist"
    first = fetch("mnist", dest, base_url=url, checksums=sums)
    assert [status for _, status in first] == ["downloaded"] * 4
    np.testing.assert_array_equal(read_idx(dest / IDX_FILES["test_images"], "t"), arrays["test_images"])
    assert sorted(p.name for p in dest.iterdir()) == sorted(IDX_FILES.values())
    handler.requests.clear()
    second = fetch("mnist", dest, base_url=url, checksums=sums)
    assert [status for _, status in second] == ["present"] * 4 and handler.requests == []


def test_corrupt_local_file_is_replaced(server, tmp_path):
    url, sums, handler, _ = server
    dest = tmp_path / "mnist"
    dest.mkdir()
    (dest / IDX_FILES["train_labels"]).write_bytes(b"junk")
    fetch("mnist", dest, base_url=url, checksums=sums)
    assert handler.requests == list(IDX_FILES.values())
    assert hashlib.sha256((dest / IDX_FILES["train_labels"]).read_bytes()).hexdigest() == \
        sums[IDX_FILES["train_labels"]]


def test_checksum_mismatch_leaves_nothing(server, tmp_path):
    url, sums, _, _ = server
    wrong = {**sums, IDX_FILES["test_images"]: "0" * 64}
    dest = tmp_path / "mnist"
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz: SHA-256 mismatch"):
        fetch("mnist", dest, base_url=url, checksums=wrong)
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        [IDX_FILES["train_images"], IDX_FILES["train_labels"]])


def test_truncated_download_leaves_nothing(server, tmp_path):
    url, sums, handler, _ = server
    handler.truncate.add(IDX_FILES["train_images"])
    dest = tmp_path / "mnist"
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: download failed "
                                        r"\(connection closed after \d+ of \d+ bytes\)"):
        fetch("mnist", dest, base_url=url, checksums=sums)
    assert list(dest.iterdir()) == []


def test_missing_on_server_and_unknown_name(server, tmp_path):
    url, sums, _, _ = server
    with pytest.raises(DataError, match=r"download failed \(HTTP 404 "):
        fetch("mnist", tmp_path / "m", base_url=url + "nowhere/", checksums=sums)
    with pytest.raises(DataError, match="unknown data set 'cifar'"):
        fetch("cifar", tmp_path / "c")


def test_published_checksums_are_complete():
    for name, sums in SHA256.items():
        assert set(sums) == set(IDX_FILES.values()), name
        assert all(len(s) == 64 and int(s, 16) >= 0 for s in sums.values())
