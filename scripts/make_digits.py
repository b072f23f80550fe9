"""Write nnback/data/shipped/digits.npz from the copy of the UCI digits bundled with scikit-learn.

Usage: python scripts/make_digits.py [--out nnback/data/shipped/digits.npz]

Output arrays: X (1797, 8, 8) uint8 pixel counts 0..16, y (1797,) uint8 digits 0..9.
scikit-learn is needed by this script only, not by nnback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    shipped = Path(__file__).resolve().parents[1] / "nnback" / "data" / "shipped"
    parser.add_argument("--out", type=Path, default=shipped / "digits.npz")
    args = parser.parse_args()
    digits = load_digits()
    images = digits.images
    if images.min() < 0 or images.max() > 16 or not np.array_equal(images, np.round(images)):
        raise SystemExit("unexpected pixel values: expected integers 0..16")
    X = images.astype(np.uint8)
    y = digits.target.astype(np.uint8)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, X=X, y=y)
    print(f"wrote {args.out}: X {X.shape} {X.dtype}, y {y.shape} {y.dtype}, "
          f"{args.out.stat().st_size} bytes")


if __name__ == "__main__":
    main()
