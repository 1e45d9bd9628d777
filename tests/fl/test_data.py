from __future__ import annotations

from pathlib import Path

import pytest
import torch

from refiner.fl import data as fl_data
from refiner.fl.data import (
    CACHE_FILE,
    Dataset,
    load_mnist,
    shuffle_labels,
    split_mnist,
    subset,
    synthetic_dataset,
)


def tagged(n: int, seed: int = 0) -> Dataset:
    """A dataset whose pixel [0, 0, 0] is the sample's index, so subsets can be traced back."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, 28, 28)
    x[:, 0, 0, 0] = torch.arange(n, dtype=torch.float32)
    return Dataset(x, torch.randint(0, 10, (n,), generator=g))


def ids(ds: Dataset) -> set[int]:
    return {int(v) for v in ds.x[:, 0, 0, 0]}


def max_class_share(ds: Dataset) -> float:
    counts = ds.label_counts()
    return max(counts) / sum(counts)


def test_dataset_checks_dtypes_and_shapes() -> None:
    with pytest.raises(ValueError, match="float32"):
        Dataset(torch.zeros(2, 1, 28, 28, dtype=torch.float64), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="disagree"):
        Dataset(torch.zeros(3, 1, 28, 28), torch.zeros(2, dtype=torch.int64))
    assert len(synthetic_dataset(7, seed=1)) == 7


def test_iid_split_sizes_and_disjointness() -> None:
    train = tagged(5000)
    validation, shards = split_mnist(train, [400, 600, 800], validation_size=300, seed=3)
    assert len(validation) == 300
    assert [len(s) for s in shards] == [400, 600, 800]
    parts = [ids(validation), *(ids(s) for s in shards)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 2100
    # labels travel with their images
    for part in (validation, *shards):
        assert torch.equal(part.y, train.y[part.x[:, 0, 0, 0].long()])
    # deterministic for a seed, different for another
    v2, s2 = split_mnist(train, [400, 600, 800], validation_size=300, seed=3)
    assert torch.equal(v2.x, validation.x) and all(
        torch.equal(a.x, b.x) for a, b in zip(s2, shards, strict=True)
    )
    v3, _ = split_mnist(train, [400, 600, 800], validation_size=300, seed=4)
    assert ids(v3) != ids(validation)


def test_non_iid_split_is_label_skewed_and_disjoint() -> None:
    train = tagged(6000)
    sizes = [500, 700, 900, 1100, 1300]
    validation, skewed = split_mnist(train, sizes, validation_size=500, non_iid_alpha=0.1, seed=0)
    _, iid = split_mnist(train, sizes, validation_size=500, seed=0)
    assert [len(s) for s in skewed] == sizes
    parts = [ids(validation), *(ids(s) for s in skewed)]
    assert sum(len(p) for p in parts) == len(set().union(*parts))
    for s in skewed:
        assert torch.equal(s.y, train.y[s.x[:, 0, 0, 0].long()])
    skew = sum(max_class_share(s) for s in skewed) / len(skewed)
    flat = sum(max_class_share(s) for s in iid) / len(iid)
    assert flat < 0.2 < 0.5 < skew


def test_split_refuses_too_much() -> None:
    with pytest.raises(ValueError, match="exceed"):
        split_mnist(tagged(100), [50, 40], validation_size=20)
    with pytest.raises(ValueError, match="positive"):
        split_mnist(tagged(100), [0])
    with pytest.raises(ValueError, match="alpha"):
        split_mnist(tagged(100), [10], validation_size=10, non_iid_alpha=0.0)


def test_shuffle_labels_keeps_images_and_label_counts() -> None:
    ds = tagged(2000)
    bad = shuffle_labels(ds, seed=5)
    assert torch.equal(bad.x, ds.x)
    assert bad.label_counts() == ds.label_counts()
    assert (bad.y != ds.y).float().mean() > 0.8  # ~90 % of labels change with 10 classes
    assert torch.equal(shuffle_labels(ds, seed=5).y, bad.y)


def test_subset() -> None:
    ds = tagged(10)
    assert ids(subset(ds, 3)) == {0, 1, 2}
    assert ids(subset(ds, [9, 4])) == {9, 4}
    with pytest.raises(ValueError):
        subset(ds, 11)


def test_mnist_cache_is_built_once_and_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REFINER_CACHE", str(tmp_path))
    train, test = load_mnist()
    cache = tmp_path / CACHE_FILE
    assert cache.exists()
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.x.shape == (60_000, 1, 28, 28) and train.x.dtype == torch.float32
    assert train.label_counts() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert test.label_counts() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    assert abs(float(train.x.mean())) < 1e-3 and abs(float(train.x.std()) - 1) < 1e-3

    def no_rebuild(path: Path) -> None:
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(fl_data, "build_cache", no_rebuild)
    mtime = cache.stat().st_mtime_ns
    train2, test2 = load_mnist()
    assert cache.stat().st_mtime_ns == mtime
    assert torch.equal(train2.x, train.x) and torch.equal(test2.y, test.y)


def test_damaged_cache_is_rebuilt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / CACHE_FILE).write_bytes(b"not an npz")
    built: list[Path] = []

    def fake_build(path: Path) -> None:
        built.append(path)
        import numpy as np

        z = np.zeros
        np.savez_compressed(
            path,
            x_train=z((60_000, 28, 28), np.uint8),
            y_train=z(60_000, np.uint8),
            x_test=z((10_000, 28, 28), np.uint8),
            y_test=z(10_000, np.uint8),
        )

    monkeypatch.setattr(fl_data, "build_cache", fake_build)
    train, _ = load_mnist(tmp_path)
    assert built == [tmp_path / CACHE_FILE]
    assert len(train) == 60_000
