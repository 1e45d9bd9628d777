"""Validation sets on the wire: safetensors with two tensors, checked before use (never pickle)."""

from __future__ import annotations

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from refiner.fl.data import Dataset

MAX_DATASET_BYTES = 256 << 20


class DatasetFormatError(ValueError):
    """Received dataset bytes are not a well-formed dataset."""


def dataset_to_bytes(ds: Dataset) -> bytes:
    return bytes(save({"x": ds.x.contiguous(), "y": ds.y.contiguous()}))


def dataset_from_bytes(data: bytes, image_shape: tuple[int, ...] = (1, 28, 28), classes: int = 10) -> Dataset:
    if len(data) > MAX_DATASET_BYTES:
        raise DatasetFormatError(f"dataset is {len(data)} bytes, more than the {MAX_DATASET_BYTES} limit")
    try:
        tensors = load(data)
    except (SafetensorError, ValueError) as exc:
        raise DatasetFormatError(f"dataset is not a valid safetensors file: {exc}") from None
    if set(tensors) != {"x", "y"}:
        raise DatasetFormatError(f"dataset must hold tensors 'x' and 'y', found {sorted(tensors)}")
    x, y = tensors["x"], tensors["y"]
    if x.dtype != torch.float32 or tuple(x.shape[1:]) != image_shape:
        raise DatasetFormatError(
            f"dataset x is {x.dtype} {tuple(x.shape)}, expected float32 (N, {image_shape})"
        )
    if y.dtype != torch.int64 or y.shape != (x.shape[0],):
        raise DatasetFormatError(f"dataset y is {y.dtype} {tuple(y.shape)}, expected int64 ({x.shape[0]},)")
    if not torch.isfinite(x).all() or (y < 0).any() or (y >= classes).any():
        raise DatasetFormatError("dataset has non-finite pixels or labels outside 0..9")
    return Dataset(x, y)
