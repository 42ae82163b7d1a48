"""Does the sliced dense model compute what the masked model computes? A check that scales with depth.

On real text from the plan's eval data, the two models' logits are compared three ways: the
largest absolute difference, top-1 agreement, and the mean KL divergence of the dense model's
next-token distribution from the masked model's.

The tolerance follows from the arithmetic rather than from a fixed number. The dense model is
evaluated a second time with its hidden and intermediate channels permuted: mathematically the
same function, summed in another order, so the two differ by exactly the rounding this model
accumulates at its depth and width (the rounding spread, measured on windows spaced through them).
Masked and sliced models differ in the same way (zeros summed in, other matrix shapes) and may
differ by up to SPREAD_FACTOR times that spread, and never less than FLOOR_ULPS units in the last
place of the logits' scale.
A wrong slice moves logits by whole units, orders of magnitude above either. (Measured on a real
30-layer model in fp32: right slices differ by 0.5 to 4 times the spread, a slice one channel off
by 10^4 times the tolerance; docs/BENCHMARKS.md.)

Both models compute in fp32 here whatever dtype they are held in (bf16 where the plan computes in bf16),
one module's weights upcast at a time. In bf16 the spread grows with bf16's 2^16 times coarser rounding:
on the same 30-layer model, pruned, it made tolerances of 148 and 582 logits, more than a wrong slice
moves them.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch

from shearc.compiler.families import FamilyAdapter, Shape

from .masks.hooks import MaskHooks
from .memory import release_freed
from .precision import computing_in_fp32
from .slicing import Kept, slice_parameter

SPREAD_FACTOR = 16.0
FLOOR_ULPS = 4.0
SPREAD_WINDOWS = 2  # the spread is measured on this many windows: permuting a model costs a pass over its weights


@dataclass(frozen=True)
class Agreement:
    max_difference: float  # max |dense - masked| over every logit
    rounding_spread: float  # max |dense - dense with channels permuted|
    tolerance: float
    logit_scale: float  # max |masked logit|
    top1_agreement: float  # fraction of positions where both models predict the same token
    kl: float  # mean KL(masked || dense) per position, nats
    tokens: int
    dtype: str

    @property
    def passed(self) -> bool:
        return self.max_difference <= self.tolerance

    def as_dict(self) -> dict[str, float | int | str | bool]:
        return {**asdict(self), "passed": self.passed}


def derived_tolerance(spread: float, logit_scale: float, dtype: torch.dtype) -> float:
    return max(SPREAD_FACTOR * spread, FLOOR_ULPS * torch.finfo(dtype).eps * logit_scale)


def channel_permutation(shape: Shape, generator: torch.Generator) -> Kept:
    """Every unit kept, hidden and intermediate channels in a random order (heads stay: rotary pairs
    channels inside a head)."""
    heads = torch.arange(shape.heads)
    return Kept(layers=list(range(shape.layers)), hidden=torch.randperm(shape.hidden, generator=generator),
                heads={layer: heads for layer in range(shape.layers)},
                kv_groups={layer: torch.arange(shape.kv_heads) for layer in range(shape.layers)},
                intermediate={layer: torch.randperm(shape.intermediate, generator=generator)
                              for layer in range(shape.layers)},
                shape=shape)


def inverse(permutation: Kept) -> Kept:
    return Kept(layers=permutation.layers, hidden=torch.argsort(permutation.hidden), heads=permutation.heads,
                kv_groups=permutation.kv_groups,
                intermediate={layer: torch.argsort(p) for layer, p in permutation.intermediate.items()},
                shape=permutation.shape)


@torch.no_grad()
def permute_channels_(model: torch.nn.Module, adapter: FamilyAdapter, permutation: Kept) -> None:
    """Reorder the model's channels in place, one tensor at a time (tied weights once)."""
    for name, param in model.named_parameters():
        param.data = slice_parameter(name, param.data, adapter, permutation, permutation.shape)[1]


@torch.no_grad()
def _logits(model: torch.nn.Module, window: torch.Tensor) -> torch.Tensor:
    return model(input_ids=window[None], use_cache=False).logits[0].float()


Permuted = Callable[[Kept], torch.nn.Module]  # the dense model with its channels in the permutation's order


KL_CHUNK_ELEMENTS = 2**20  # fp32 values per chunk (4 MiB): chunks that stay in cache run several times faster


def kl_divergence_sum(reference: torch.Tensor, other: torch.Tensor, rows: int | None = None) -> float:
    """Sum over positions of KL(p || q), p = softmax(reference), q = softmax(other), a few positions at a time.

    In fp32, within about 1% of fp64 log-softmaxes even at a right slice's divergences (1e-10 nats; a plain fp32
    difference of log-softmaxes would be all rounding there): with d = reference - other (exact for nearby
    logits) centred on its mean under q, u = d - E_q[d], KL = E_p[u] - log E_q[exp(u)], and log E_q[exp(u)] =
    log1p(E_q[expm1(u)]) keeps its digits while u is small. Where the logits differ by whole units (a wrong slice)
    the log term is a plain logsumexp. (fp64 log-softmaxes of a 262,144-token vocabulary took an eighth of the
    finalize stage.)"""
    rows = rows or max(1, KL_CHUNK_ELEMENTS // reference.shape[-1])
    total = 0.0
    for ref, oth in zip(reference.float().split(rows), other.float().split(rows), strict=True):
        q = oth.softmax(-1)
        u = ref - oth
        u -= (q * u).sum(-1, keepdim=True)
        log_mean = torch.log1p((q * torch.expm1(u.clamp(max=1.0))).sum(-1))
        far = u.abs().amax(-1) >= 1.0
        if bool(far.any()):
            log_mean[far] = torch.logsumexp(oth[far].log_softmax(-1) + u[far], -1)
        total += ((ref.softmax(-1) * u).sum(-1) - log_mean).double().sum().item()
    return total


@torch.no_grad()
def compare_logits(masked_model: torch.nn.Module, masks: dict[str, torch.Tensor], dense: torch.nn.Module,
                   adapter: FamilyAdapter, windows: Sequence[torch.Tensor], *, seed: int,
                   tolerance: float | None = None, permuted: Permuted | None = None) -> Agreement:
    """`masked_model` under `masks` against `dense` on `windows` (1-D token tensors on the models' device).
    `tolerance`, when given, replaces the derived one. The rounding spread is measured on SPREAD_WINDOWS windows
    spaced evenly through `windows` (which the finalize stage takes domain after domain), against the dense model
    with its channels permuted: `permuted(permutation)` when given (the finalize stage's streamed model, reading
    permuted weights from disk), else the dense model itself, permuted once in place one tensor at a time (no
    second copy of it is made) and put back."""
    masked_model.eval()
    dense.eval()
    with computing_in_fp32(masked_model), computing_in_fp32(dense):
        return _compare(masked_model, masks, dense, adapter, windows, seed, tolerance, permuted)


def _compare(masked_model: torch.nn.Module, masks: dict[str, torch.Tensor], dense: torch.nn.Module,
             adapter: FamilyAdapter, windows: Sequence[torch.Tensor], seed: int, tolerance: float | None,
             permuted: Permuted | None) -> Agreement:
    hooks = MaskHooks(masked_model, adapter)
    hooks.values = {kind: mask.float() for kind, mask in masks.items()}
    largest = scale = kl_sum = 0.0
    same = tokens = 0
    spread_at = list(range(0, len(windows), max(1, math.ceil(len(windows) / SPREAD_WINDOWS))))[:SPREAD_WINDOWS]
    try:
        for window in windows:
            sliced = _logits(dense, window)  # first: a streamed dense model's largest module is not read beside
            reference = _logits(masked_model, window)  # the masked model's logits
            largest = max(largest, (sliced - reference).abs_().max().item())
            scale = max(scale, reference.abs().max().item())
            kl_sum += kl_divergence_sum(reference, sliced)
            same += int((reference.argmax(-1) == sliced.argmax(-1)).sum())
            tokens += window.numel()
            del reference, sliced
            release_freed()  # a window's logits (vocabulary x tokens, several copies) back before the next
    finally:
        hooks.remove()
    spread = rounding_spread(dense, adapter, [windows[number] for number in spread_at], seed, permuted)
    return Agreement(max_difference=largest, rounding_spread=spread,
                     tolerance=tolerance if tolerance is not None else derived_tolerance(spread, scale, torch.float32),
                     logit_scale=scale, top1_agreement=same / tokens, kl=kl_sum / tokens, tokens=tokens,
                     dtype="float32")


@torch.no_grad()
def rounding_spread(dense: torch.nn.Module, adapter: FamilyAdapter, windows: Sequence[torch.Tensor], seed: int,
                    permuted: Permuted | None = None) -> float:
    """max |dense - dense with its channels permuted| over `windows`; `permuted`: as compare_logits. With it, the
    two models run window by window and nothing is held between windows; without it, the unpermuted logits of
    every window are held while the dense model is permuted in place."""
    permutation = channel_permutation(adapter.shape_of(dense.config), torch.Generator().manual_seed(seed))
    if permuted is not None:
        other, largest = permuted(permutation), 0.0
        for window in windows:
            largest = max(largest, (_logits(dense, window) - _logits(other, window)).abs_().max().item())
            release_freed()
        return largest
    unpermuted = [_logits(dense, window) for window in windows]
    permute_channels_(dense, adapter, permutation)
    try:
        return max((_logits(dense, window) - logits).abs_().max().item()
                   for window, logits in zip(windows, unpermuted, strict=True))
    finally:
        permute_channels_(dense, adapter, inverse(permutation))
