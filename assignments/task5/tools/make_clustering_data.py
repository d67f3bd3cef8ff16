"""Generate task 5 part 1's two data sets once, with a fixed seed (the CSVs are committed; this is provenance).

blobs.csv: three well separated convex groups, so that K-Means with k=3 recovers them exactly and any
agreement threshold means something. moons.csv: two interleaving half moons plus a few isolated outliers,
so that DBSCAN with the lecture's parameters (eps=0.2, min_samples=5) finds both moons and marks the
outliers as noise, while DBSCAN's default eps=0.5 merges the moons into one cluster. The true groups go to
hidden/ (never into the sandbox); the public CSVs hold only coordinates.

    python assignments/task5/tools/make_clustering_data.py
"""

from pathlib import Path

import numpy as np
from sklearn.datasets import make_blobs, make_moons

SEED = 20261110
TASK = Path(__file__).resolve().parents[1]


def blobs(rng: np.random.RandomState):
    X, y = make_blobs(n_samples=300, centers=[(-2.0, -1.5), (2.0, -1.5), (0.0, 2.0)], cluster_std=0.35,
                      random_state=rng)
    return X, y


def moons(rng: np.random.RandomState):
    X, y = make_moons(n_samples=300, noise=0.06, random_state=rng)
    outliers = np.array([[-1.6, 1.6], [2.6, 1.5], [-1.5, -1.1], [2.7, -1.0], [0.5, 1.9], [0.6, -1.3],
                         [-1.7, 0.3], [2.8, 0.4]])
    X = np.vstack([X, outliers])
    y = np.concatenate([y, -np.ones(len(outliers), dtype=int)])
    order = rng.permutation(len(X))
    return X[order], y[order]


def write(name: str, X: np.ndarray, y: np.ndarray) -> None:
    (TASK / "data").mkdir(exist_ok=True)
    (TASK / "hidden").mkdir(exist_ok=True)
    np.savetxt(TASK / "data" / f"{name}.csv", X, delimiter=",", header="x,y", comments="", fmt="%.6f")
    np.savetxt(TASK / "hidden" / f"{name}_labels.csv", y, header="label", comments="", fmt="%d")


if __name__ == "__main__":
    rng = np.random.RandomState(SEED)
    write("blobs", *blobs(rng))
    write("moons", *moons(rng))
