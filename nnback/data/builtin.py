"""Named real data sets: the shipped 8x8 digits and the fetched (Fashion-)MNIST."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from nnback.data.fetch import IDX_FILES
from nnback.data.files import arrays_table, read_npz
from nnback.data.idx import read_idx
from nnback.data.table import Table
from nnback.errors import DataError

# Shipped inside the package (package data), so every kind of install has it.
DIGITS_PATH = Path(str(resources.files("nnback.data").joinpath("shipped", "digits.npz")))

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def load_digits(path: Path = DIGITS_PATH) -> Table:
    """The UCI optical digits test set: X (1797, 64) uint8 in 0..16, y (1797,) uint8 0..9."""
    if not path.is_file():
        raise DataError(f"digits: {path} is missing from this installation of nnback; "
                        "reinstall it (a source checkout rebuilds the file with scripts/make_digits.py)")
    return read_npz(path, "digits", "X", "y")


def load_mnist(name: str, folder: Path, origin: str) -> tuple[Table, Table]:
    """Train and test tables of MNIST or Fashion-MNIST read from the four IDX files.

    X is (N, 784) uint8; y is (N,) uint8 class numbers 0..9 (for Fashion-MNIST the
    numbers index FASHION_CLASSES).

    Args:
        name: "mnist" or "fashion-mnist".
        folder: where ``nnback data fetch`` put the files; origin: the folder as written.
    """
    tables = []
    for part in ("train", "test"):
        images, labels = IDX_FILES[f"{part}_images"], IDX_FILES[f"{part}_labels"]
        for filename in (images, labels):
            if not (folder / filename).is_file():
                raise DataError(f"{origin}/{filename}: file not found; run "
                                f"`nnback data fetch {name} --dir {origin}`")
        X = read_idx(folder / images, f"{origin}/{images}")
        y = read_idx(folder / labels, f"{origin}/{labels}")
        tables.append(arrays_table(X, y, f"{origin}/{images}", f"{origin}/{labels}"))
    return tables[0], tables[1]
