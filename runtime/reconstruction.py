"""Layer-wise reconstruction after selection (SlimGPT, ZipLM): refit the projections that read pruned channels.

    prune: {method: taylor, reconstruct: {method: least-squares, calibration_samples: 128, damping: 0.01}}
    errors = reconstruct(model, adapter, masks, windows, damping=0.01, batch_size=2)

Pruned heads are removed on the attention output projection's input (its columns, head after head), pruned
intermediate channels on the down projection's input. For such a projection W (out x in), with inputs X on the
calibration windows (tokens x in: every channel, as the layer computes them before its mask), the masked model
computes (X * m) W^T. Its kept columns K are refit to what it computed before selection, (X * r) W^T (r: 1 for
every channel after scoring; the soft values of every unit after hard-concrete), by ridge least squares over the
Gram matrix H = X^T X:

    V = (W * r) H[:, K] (H[K, K] + lambda I)^-1,   lambda = damping * mean(diag H[K, K]),   W[:, K] = V / m[K]

The pruned columns stay as they were: their mask zeroes them and slicing drops them, so folding, slicing and
the finalize check see a model like any other. Layers go in order, each on the windows' hidden states passed
through the layers before it as refit and masked, so a layer's refit also absorbs what earlier cuts changed
in its inputs. Blocks are called one at a time with the arguments the model passed them (captured in one
partial forward), so the whole costs about three forwards over the windows and one Gram matrix at a time.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shearc.compiler.families import FamilyAdapter, Shape

from .masks.hooks import MaskHooks


class _Reached(Exception):
    """Raised by a hook to end a forward once what it waited for has been seen."""


@dataclass(frozen=True)
class BlockCall:
    """What the model passed a decoder block besides its hidden states (masks, rotary tables, positions)."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]

    def __call__(self, block: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
        out = block(hidden, *self.args, **self.kwargs)
        return out[0] if isinstance(out, tuple) else out


@dataclass(frozen=True)
class Refit:
    """One projection's output error on the calibration windows, sum of squares, before and after its refit."""

    layer: int
    module: str
    error_before: float
    error_after: float

    def as_dict(self) -> dict[str, Any]:
        return {"layer": self.layer, "module": self.module, "error_before": self.error_before,
                "error_after": self.error_after}


def refit_weight(weight: torch.Tensor, gram: torch.Tensor, mask: torch.Tensor, reference: torch.Tensor,
                 damping: float) -> torch.Tensor:
    """`weight` (out x in) with its kept input columns refit by the module docstring's solve, in float64; returned
    in the weight's dtype. `mask` and `reference` hold one value per input channel."""
    kept = torch.nonzero(mask).flatten()
    target = weight.detach().double() * reference.double()
    rows = gram[kept]  # one copy of the kept rows (kept x in: half a GB for a 7B down projection) serves both
    block = rows[:, kept]
    strength = damping * block.diagonal().mean()
    block = block + strength * torch.eye(len(kept), dtype=block.dtype, device=block.device)
    rhs = rows @ target.T  # [kept, out]
    factor, info = torch.linalg.cholesky_ex(block)
    solved = torch.cholesky_solve(rhs, factor) if int(info) == 0 else torch.linalg.pinv(block, hermitian=True) @ rhs
    refit = weight.detach().clone()
    refit[:, kept] = (solved.T / mask[kept].double()).to(weight.dtype)
    return refit


def output_error(target: torch.Tensor, weight: torch.Tensor, gram: torch.Tensor, mask: torch.Tensor) -> float:
    """Sum over the windows' tokens of ||x target^T - (x * m) weight^T||^2 from the Gram matrix: tr(D H D^T) with
    D = target - weight * m (`target`: the weight as it acted before selection, its reference folded in)."""
    difference = target.double() - weight.detach().double() * mask.double()
    return float(((difference @ gram) * difference).sum())


def captured_calls(model: torch.nn.Module, blocks: torch.nn.ModuleList, batches: list[torch.Tensor]
                   ) -> tuple[list[torch.Tensor], list[list[BlockCall]]]:
    """Per batch, the first block's input hidden states; per block and batch, the rest of what the model passed it.
    Each forward stops at the last block's input."""
    states: list[torch.Tensor] = []
    calls: list[list[BlockCall]] = [[] for _ in blocks]

    def recorder(index: int):
        def hook(_module: torch.nn.Module, args: tuple, kwargs: dict) -> None:
            kwargs = dict(kwargs)
            hidden, rest = (args[0], args[1:]) if args else (kwargs.pop("hidden_states"), ())
            if index == 0:
                states.append(hidden.detach())
            calls[index].append(BlockCall(rest, kwargs))
            if index == len(blocks) - 1:
                raise _Reached
        return hook

    handles = [block.register_forward_pre_hook(recorder(index), with_kwargs=True) for index, block in enumerate(blocks)]
    try:
        for batch in batches:
            with suppress(_Reached):
                model(batch, use_cache=False)
    finally:
        for handle in handles:
            handle.remove()
    return states, calls


def input_gram(block: torch.nn.Module, site: torch.nn.Module, states: list[torch.Tensor], calls: list[BlockCall]
               ) -> torch.Tensor:
    """X^T X of `site`'s input (before any mask hook) over every batch, in float64; each block call stops there."""
    width = site.weight.shape[1]
    gram = torch.zeros(width, width, dtype=torch.float64, device=site.weight.device)

    def hook(_module: torch.nn.Module, args: tuple) -> None:
        x = args[0].detach().reshape(-1, width).float()
        gram.add_((x.T @ x).double())  # per batch in fp32 (the machine's fast path), summed in float64
        raise _Reached

    handle = site.register_forward_pre_hook(hook, prepend=True)
    try:
        for hidden, call in zip(states, calls, strict=True):
            with suppress(_Reached):
                call(block, hidden)
    finally:
        handle.remove()
    return gram


def site_masks(masks: dict[str, torch.Tensor], shape: Shape, layer: int) -> dict[str, torch.Tensor]:
    """Per input channel of each refit site in `layer`: 'head' (o_proj's channels) and 'intermediate'."""
    out = {}
    if "query_head" in masks:
        out["head"] = masks["query_head"][layer].repeat_interleave(shape.head_dim)
    if "intermediate" in masks:
        out["intermediate"] = masks["intermediate"][layer]
    return out


def reconstruct(model: torch.nn.Module, adapter: FamilyAdapter, shape: Shape, masks: dict[str, torch.Tensor],
                windows: list[torch.Tensor], *, damping: float, batch_size: int,
                reference: dict[str, torch.Tensor] | None = None) -> list[Refit]:
    """Refit, in place and layer by layer, every kept layer's projections that read pruned heads or intermediate
    channels (masks in the hooks' layout; `reference`, same layout: what selection replaced, 1 where absent)."""
    blocks = model.get_submodule(adapter.layer_prefix)
    sites = {"head": adapter.head_site, "intermediate": adapter.intermediate_site}
    layer_mask = masks.get("layer")
    hooks = MaskHooks(model, adapter)
    hooks.values = masks
    was_training = model.training
    model.eval()
    refits: list[Refit] = []
    try:
        with torch.no_grad(), layer_progress(len(blocks)) as advance:
            batches = [torch.stack(windows[i:i + batch_size]) for i in range(0, len(windows), batch_size)]
            states, calls = captured_calls(model, blocks, batches)
            for layer, block in enumerate(blocks):
                if layer_mask is None or layer_mask[layer] != 0:
                    chosen = site_masks(masks, shape, layer)
                    before = site_masks(reference or {}, shape, layer)
                    for kind, mask in chosen.items():
                        site = block.get_submodule(sites[kind])
                        refits.append(_refit_site(site, input_gram(block, site, states, calls[layer]), mask,
                                                  before.get(kind, torch.ones_like(mask)), damping, layer, sites[kind]))
                states = [call(block, hidden) for hidden, call in zip(states, calls[layer], strict=True)]
                advance()
    finally:
        hooks.remove()
        model.train(was_training)
    return refits


def _refit_site(site: torch.nn.Module, gram: torch.Tensor, mask: torch.Tensor, reference: torch.Tensor,
                damping: float, layer: int, name: str) -> Refit:
    """Refit one projection, unless the damped solve would leave a larger error than selection did (a damping so
    strong that it shrinks the kept columns more than the refit gains): then its weight stays as it was."""
    target = site.weight.detach().double() * reference.double()
    before = output_error(target, site.weight, gram, mask)
    refit = refit_weight(site.weight, gram, mask, reference, damping)
    after = output_error(target, refit, gram, mask)
    if after > before:
        return Refit(layer, name, before, before)
    site.weight.copy_(refit)
    return Refit(layer, name, before, after)


@contextmanager
def layer_progress(layers: int) -> Iterator[Callable[[], None]]:
    """A progress bar over the layers on a terminal (nothing otherwise); yields the function that advances it."""
    with Progress(TextColumn("reconstructing layers"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  disable=not sys.stderr.isatty(), transient=True) as progress:
        task = progress.add_task("layers", total=layers)
        yield lambda: progress.advance(task)
