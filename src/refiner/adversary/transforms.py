"""What a dishonest worker does to its data or to its update before submitting it (the adversary study).

Every function is pure and deterministic: it takes the model the round started from (``global_state``)
and, where the attack needs one, the worker's honestly trained local model (``local_state``), and
returns the state the worker submits. Only floating-point tensors are touched; integer buffers (e.g. a
BatchNorm's ``num_batches_tracked``) are copied from the global model, so the result always passes the
receiver's model-spec validation (names, shapes, dtypes, finite values) and has to be judged on its
merits by the committee.

| attack | what is submitted |
|---|---|
| targeted label flip | honest training on data whose ``source`` labels were replaced by ``target`` |
| random weights | Gaussian noise N(0, σ²) in place of every weight: no training at all |
| sign flip | ``w_g − (w_l − w_g)``: the honest update reversed |
| scaled update | ``w_g + k·(w_l − w_g)``: the honest update amplified (model replacement / boosting) |
| permuted units | the honest model, hidden units shuffled: same loss, far from honest models |
| extrapolator | ``w_g + a·(w_g − w_p)``: no data, the last global step (``w_p`` the previous model) again |
| perturbed copy | ``w_g + (Δ + noise)``: a partner's update ``Δ`` with Gaussian noise, claimed twice |
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch

from refiner.fl.data import Dataset
from refiner.fl.models import State

StateLike = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class AttackParameters:
    """The knobs of the worker attacks (defaults as in the adversary tests)."""

    #: targeted label flip: every sample labelled `flip_source` is relabelled `flip_target`
    flip_source: int = 7
    flip_target: int = 1
    #: random weights: standard deviation of the Gaussian noise that replaces the update
    noise_std: float = 1.0
    #: scaled update: w_g + k·(w_l − w_g)
    scale: float = 10.0
    #: data-size inflation: the sample count claimed on chain is this multiple of the real one
    inflation: int = 10
    #: extrapolator: w_g + extrapolation·(w_g − w_p)
    extrapolation: float = 1.0

    def __post_init__(self) -> None:
        if self.flip_source == self.flip_target or min(self.flip_source, self.flip_target) < 0:
            raise ValueError(f"a label flip needs two different labels, got {self}")
        if not self.noise_std > 0 or self.inflation < 1:
            raise ValueError(f"invalid attack parameters {self}")


def flip_labels(ds: Dataset, source: int, target: int) -> Dataset:
    """A targeted label flip (a backdoor-style poisoning): the same images, with every ``source`` label
    replaced by ``target`` (e.g. all 7s labelled 1); all other labels untouched."""
    y = torch.where(ds.y == source, torch.tensor(target, dtype=ds.y.dtype), ds.y)
    return Dataset(ds.x, y.contiguous())


def _map_floats(global_state: StateLike, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> State:
    out: State = {}
    for name in sorted(global_state):
        g = global_state[name].detach().to("cpu")
        out[name] = (fn(name, g).to(g.dtype) if g.is_floating_point() else g.clone()).contiguous()
    return out


def random_weights(global_state: StateLike, std: float, seed: int) -> State:
    """Gaussian noise N(0, std²) of the model's shapes in place of an update (nothing was trained)."""
    gen = torch.Generator().manual_seed(seed)
    return _map_floats(
        global_state, lambda _, g: torch.randn(g.shape, generator=gen, dtype=torch.float64) * std
    )


def scale_update(global_state: StateLike, local_state: StateLike, k: float) -> State:
    """``w_g + k·(w_l − w_g)``: the local update multiplied by ``k`` (k = 1 is the honest update,
    k = −1 the sign flip, k > 1 boosting)."""
    return _map_floats(
        global_state,
        lambda name, g: (
            g.to(torch.float64)
            + k * (local_state[name].detach().to("cpu", torch.float64) - g.to(torch.float64))
        ),
    )


def sign_flip(global_state: StateLike, local_state: StateLike) -> State:
    """``w_g − (w_l − w_g)``: the honest update reversed, so that it pushes the model uphill."""
    return scale_update(global_state, local_state, -1.0)


def extrapolate(previous_state: StateLike, global_state: StateLike, a: float) -> State:
    """``w_g + a·(w_g − w_p)``: a worker with no data repeats (``a`` times) the step between the last
    two global models it received, which points downhill as long as the task is still learning."""
    return _map_floats(
        global_state,
        lambda name, g: (
            g.to(torch.float64)
            + a * (g.to(torch.float64) - previous_state[name].detach().to("cpu", torch.float64))
        ),
    )


def perturbed_copy(global_state: StateLike, local_state: StateLike, noise: float, seed: int) -> State:
    """Another worker's update with Gaussian noise of ``noise ×`` its per-tensor standard deviation
    added: one party's work claimed by a second identity that disguises the copy."""
    gen = torch.Generator().manual_seed(seed)

    def noisy(name: str, g: torch.Tensor) -> torch.Tensor:
        d = local_state[name].detach().to("cpu", torch.float64) - g.to(torch.float64)
        std = float(d.std()) if d.numel() > 1 else abs(float(d.sum()))
        return (
            g.to(torch.float64) + d + noise * std * torch.randn(d.shape, generator=gen, dtype=torch.float64)
        )

    return _map_floats(global_state, noisy)


def permute_hidden_units(local_state: StateLike, layers: Sequence[str], seed: int) -> State:
    """The honest model with the hidden units of a chain of layers permuted: the same function (hence
    the same validation loss), far from every honest model in weight space, so that averaging it in
    destroys the aggregate.

    ``layers`` names the chain in order (e.g. ``conv1, conv2, fc``); each layer but the last has its
    output units (``<layer>.weight`` dim 0 and ``<layer>.bias``) shuffled, and the next layer's input
    (dim 1, in blocks when a flatten sits between them) shuffled the same way.
    """
    gen = torch.Generator().manual_seed(seed)
    out: State = {k: v.detach().to("cpu").clone() for k, v in local_state.items()}
    for layer, nxt in itertools.pairwise(layers):
        units = out[f"{layer}.weight"].shape[0]
        perm = torch.randperm(units, generator=gen)
        out[f"{layer}.weight"] = out[f"{layer}.weight"][perm]
        out[f"{layer}.bias"] = out[f"{layer}.bias"][perm]
        w = out[f"{nxt}.weight"]
        blocks = w.reshape(w.shape[0], units, -1, *w.shape[2:])
        out[f"{nxt}.weight"] = blocks[:, perm].reshape(w.shape)
    return {k: v.contiguous() for k, v in sorted(out.items())}


#: the hidden-unit chain of each zoo model that :func:`permute_hidden_units` can permute
PERMUTABLE_LAYERS: dict[str, tuple[str, ...]] = {
    "small_cnn": ("conv1", "conv2", "fc"),
    "mnist_cnn": ("conv1", "conv2", "fc1", "fc2"),
}
