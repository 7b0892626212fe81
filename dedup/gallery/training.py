"""Training the shared inverted-file index at the list counts a large gallery needs.

A flat k-means over ``nlist`` centroids costs ``n * nlist * d`` per iteration: at 16,384
lists it took 259 s on 786 k templates on 2 cores. Training uses instead:

- **Two-level k-means** (from ``TWO_LEVEL_FROM`` lists): ``sqrt(nlist)`` coarse centroids,
  then each coarse cluster split into a share of ``nlist`` proportional to its size (5 s for
  the case above). The lists are a little less even than a flat k-means gives; the recall
  cost is measured by ``benchmarks/gallery.py``.

Filling a shard keeps FAISS's exact flat assignment: one matrix product per block of templates
(72 us a template against 50,176 lists on 2 cores). An HNSW graph over the centroids was tried
for it and put only 50% (efSearch 64) to 97% (efSearch 512, and slower than the product) of
templates in their nearest list; a template in the wrong list is one that no probe of its
person reaches at any nprobe.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np
from numpy.typing import NDArray

from dedup.gallery.recipes import IndexSpec

TWO_LEVEL_FROM = 2048
KMEANS_ITERATIONS = 10
OPQ_ITERATIONS = 8
OPQ_TRAIN_POINTS = 16_384


def train_index(
    recipe: str,
    spec: IndexSpec,
    sample: NDArray[np.float32],
    seed: int,
    centroids: NDArray[np.float32] | None = None,
) -> faiss.Index:
    """The trained, empty inner-product index every shard is a copy of.

    ``centroids`` (unit, ``spec.nlist`` of them) replace the coarse k-means, so that recipes
    tried side by side share one coarse quantizer. Under an OPQ rotation the rotation is trained
    first and the centroids are rotated with it (a rotation keeps inner products, so every
    template keeps its list).
    """
    dimension = sample.shape[1]
    index = faiss.index_factory(dimension, recipe, faiss.METRIC_INNER_PRODUCT)
    top: Any = index  # (faiss's stubs omit most attributes)
    if hasattr(top, "do_polysemous_training"):
        # Polysemous codes only serve Hamming pre-filtering under L2, and are slow to train.
        top.do_polysemous_training = False
    ivf: Any = faiss.extract_index_ivf(index)
    ivf.cp.seed = seed
    ivf.cp.niter = KMEANS_ITERATIONS
    if centroids is None and spec.nlist >= TWO_LEVEL_FROM:
        centroids = two_level_centroids(sample, spec.nlist, seed)
    elif spec.opq:
        _quick_opq(faiss.downcast_VectorTransform(top.chain.at(0)))
    if centroids is not None:
        if spec.opq:
            rotation: Any = faiss.downcast_VectorTransform(top.chain.at(0))
            _quick_opq(rotation)
            rotation.train(sample)
            centroids = np.ascontiguousarray(rotation.apply(centroids), dtype=np.float32)
        ivf.quantizer.add(centroids)
    # With the quantizer already filled, FAISS trains only the codes (and any rotation left).
    index.train(sample)
    return index


def _quick_opq(rotation: Any) -> None:
    """FAISS's OPQ defaults (50 rounds of an 8-bit PQ on 65,536 points) took minutes on 30 k
    templates on 2 cores; 8 rounds on 16,384 points learn the rotation in seconds."""
    rotation.niter = OPQ_ITERATIONS
    rotation.max_train_points = OPQ_TRAIN_POINTS


def jittered(
    sample: NDArray[np.float32], count: int, seed: int, spread: float = 0.02
) -> NDArray[np.float32]:
    """``count`` unit training points from a smaller sample: the sample, then copies of it
    with a little noise. Only a gallery smaller than its PQ codebook (16 entries for 4-bit
    codes) needs this, on a registry's first nights; such a gallery is searched by the exact
    sweep (cost model), and IVF-PQ results are re-scored exactly in any case."""
    rng = np.random.default_rng([seed, 7])
    copies = sample[np.arange(count - len(sample)) % len(sample)]
    noisy = copies + rng.normal(0.0, spread, copies.shape)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    return np.ascontiguousarray(np.concatenate([sample, noisy]), dtype=np.float32)


def two_level_centroids(sample: NDArray[np.float32], nlist: int, seed: int) -> NDArray[np.float32]:
    """``nlist`` unit-length centroids of ``sample`` by two nested k-means."""
    n, dimension = sample.shape
    coarse_count = max(1, round(math.sqrt(nlist)))
    coarse = faiss.Kmeans(
        dimension,
        coarse_count,
        niter=KMEANS_ITERATIONS,
        seed=seed,
        max_points_per_centroid=n // coarse_count + 1,
        spherical=True,
    )
    coarse.train(sample)
    _, nearest = coarse.index.search(sample, 1)
    members = nearest.ravel()
    shares = split_lists(np.bincount(members, minlength=coarse_count), nlist)
    parts = []
    for cluster, share in enumerate(shares):
        points = np.ascontiguousarray(sample[members == cluster])
        if share == 0:
            continue
        if share >= len(points):
            parts.append(points[:share])
            continue
        if share == 1:
            parts.append(points.mean(axis=0, keepdims=True))
            continue
        fine = faiss.Kmeans(
            dimension,
            int(share),
            niter=KMEANS_ITERATIONS,
            seed=seed + 1 + cluster,
            max_points_per_centroid=len(points) // int(share) + 1,
            spherical=True,
        )
        fine.train(points)
        parts.append(np.asarray(fine.centroids))
    centroids = np.concatenate(parts).astype(np.float32)
    if len(centroids) < nlist:  # coarse clusters smaller than their share: reuse spare points
        spare = sample[np.random.default_rng(seed).choice(n, nlist - len(centroids), False)]
        centroids = np.concatenate([centroids, spare])
    norms = np.linalg.norm(centroids, axis=1, keepdims=True)
    return np.ascontiguousarray(centroids / np.maximum(norms, 1e-12), dtype=np.float32)


def split_lists(sizes: NDArray[np.int64], nlist: int) -> NDArray[np.int64]:
    """``nlist`` lists shared out in proportion to ``sizes`` (largest remainders first), every
    non-empty cluster getting at least one.

    >>> split_lists(np.array([50, 30, 20, 0]), 10).tolist()
    [5, 3, 2, 0]
    """
    total = int(sizes.sum())
    exact = sizes / max(total, 1) * nlist
    shares = np.floor(exact).astype(np.int64)
    shares[(sizes > 0) & (shares == 0)] = 1
    order = np.argsort(-(exact - np.floor(exact)), kind="stable")
    for cluster in order[: max(0, nlist - int(shares.sum()))]:
        shares[cluster] += 1
    while shares.sum() > nlist:
        shares[int(np.argmax(shares))] -= 1
    return shares
