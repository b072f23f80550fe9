"""Download MNIST and Fashion-MNIST IDX files, verified by SHA-256, written atomically.

Each file is streamed into a temporary file in the destination folder, fsynced,
checked against its SHA-256 sum and only then renamed over the final name, so a failed
or interrupted download never leaves a partial file. Files already present with the
right sum are not downloaded again.
"""

from __future__ import annotations

import hashlib
import http.client
import urllib.error
import urllib.request
from pathlib import Path

from nnback.errors import DataError
from nnback.runfolder.atomic import atomic_write

IDX_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}

BASE_URLS = {
    "mnist": "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}

SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
        "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
        "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
        "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
    },
}

CHUNK = 1 << 20


def fetch(name: str, dest_dir: Path, base_url: str | None = None,
          checksums: dict[str, str] | None = None, timeout: float = 60.0) -> list[tuple[Path, str]]:
    """Make sure the four IDX files of data set ``name`` are in dest_dir.

    Args:
        name: "mnist" or "fashion-mnist".
        dest_dir: folder for the files (created if missing).
        base_url: where the files are; default the data set's public mirror.
        checksums: file name -> SHA-256 hex digest; default the published sums.
        timeout: seconds to wait on the network per request.

    Returns:
        (path, status) for each file, status "present" (already verified) or "downloaded".

    Raises:
        DataError: unknown name, network failure, checksum mismatch or unwritable folder.
    """
    if name not in SHA256:
        raise DataError(f"unknown data set {name!r}; can fetch {', '.join(SHA256)}")
    base_url = base_url or BASE_URLS[name]
    checksums = checksums or SHA256[name]
    dest_dir = Path(dest_dir)
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{dest_dir}: cannot create folder ({exc.strerror or exc})") from None
    done = []
    for filename in IDX_FILES.values():
        path = dest_dir / filename
        if path.is_file() and sha256_of(path) == checksums[filename]:
            done.append((path, "present"))
            continue
        _download(base_url.rstrip("/") + "/" + filename, path, checksums[filename], timeout)
        done.append((path, "downloaded"))
    return done


def sha256_of(path: Path) -> str:
    """Hex SHA-256 digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _download(url: str, path: Path, expected: str, timeout: float) -> None:
    """Stream url into path atomically; nothing is left at path or beside it on failure."""

    def write(out) -> None:
        digest = hashlib.sha256()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                size, received = response.headers.get("Content-Length"), 0
                while chunk := response.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    received += len(chunk)
        except urllib.error.HTTPError as exc:
            raise DataError(f"{url}: download failed (HTTP {exc.code} {exc.reason})") from None
        except (OSError, http.client.HTTPException) as exc:
            raise DataError(f"{url}: download failed ({getattr(exc, 'reason', exc)})") from None
        if size is not None and received != int(size):
            raise DataError(f"{url}: download failed (connection closed after "
                            f"{received} of {size} bytes)")
        if digest.hexdigest() != expected:
            raise DataError(f"{url}: SHA-256 mismatch (expected {expected}, got "
                            f"{digest.hexdigest()}); the file was not saved")

    atomic_write(path, write)


