"""Write data/iris.csv from the copy of the UCI Iris data bundled with scikit-learn.

Usage: python scripts/make_iris.py [--out data/iris.csv]

Output: a header row and 150 rows of four measurements in cm and the species name
(setosa, versicolor, virginica). scikit-learn is needed by this script only.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

from sklearn.datasets import load_iris

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width", "species"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path,
                        default=Path(__file__).resolve().parents[1] / "data" / "iris.csv")
    args = parser.parse_args()
    iris = load_iris()
    with open(args.out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(COLUMNS)
        for features, label in zip(iris.data, iris.target, strict=True):
            writer.writerow([f"{v:g}" for v in features] + [iris.target_names[label]])
    print(f"wrote {args.out}: {len(iris.data)} rows")


if __name__ == "__main__":
    main()
