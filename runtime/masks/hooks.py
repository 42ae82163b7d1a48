"""Masks on an unmodified transformers model, applied with forward hooks (no forked modeling code).

    hooks = MaskHooks(model, adapter)
    hooks.values = {"hidden": z_h, "layer": z_l, "query_head": z_heads, "intermediate": z_int}
    model(input_ids)          # every forward reads the current values
    hooks.remove()

Shapes: hidden [d], layer [L], query_head [L, H] (one value per query head; a KV group's value is
repeated over its query heads), intermediate [L, I]. A kind left out is not masked. The kinds are
the dependency graph's unit kinds (a KV group is masked through its query heads).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from shearc.compiler.families import FamilyAdapter


def norm_rescale(hidden: torch.Tensor | None) -> float:
    """sqrt(d / kept): makes an RMSNorm over all d channels average over the kept ones only.

    Masked channels of the residual stream are exactly 0, so scaling the norm's input by
    this factor and dividing its output by it gives x / sqrt(sum(x^2) / kept + eps), which
    is what the sliced model's norm computes, eps included.
    """
    if hidden is None:
        return 1.0
    kept = int(torch.count_nonzero(hidden))
    return math.sqrt(hidden.numel() / kept) if 0 < kept < hidden.numel() else 1.0


class MaskHooks:
    def __init__(self, model: torch.nn.Module, adapter: FamilyAdapter) -> None:
        self._values: dict[str, torch.Tensor] = {}
        self._rescale = 1.0
        self._handles: list[Any] = []
        for name in adapter.hidden_outputs:
            self._on_output(model.get_submodule(name), None, scale_input=name == adapter.final_norm)
        for layer, block in enumerate(model.get_submodule(adapter.layer_prefix)):
            for name in adapter.block_hidden_outputs:
                self._on_output(block.get_submodule(name), layer if name in adapter.layer_sites else None,
                                scale_input=name in adapter.block_norms)
            self._pre(block.get_submodule(adapter.head_site), self._head_input(layer))
            self._pre(block.get_submodule(adapter.intermediate_site), self._intermediate_input(layer))

    @property
    def values(self) -> dict[str, torch.Tensor]:
        return self._values

    @values.setter
    def values(self, values: dict[str, torch.Tensor]) -> None:
        """Set once per forward: the norm rescale is computed here, not in every norm's hook."""
        self._values = values
        self._rescale = norm_rescale(values.get("hidden"))

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def _pre(self, module: torch.nn.Module, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        def hook(_module: torch.nn.Module, args: tuple) -> tuple:
            return (transform(args[0]), *args[1:])

        self._handles.append(module.register_forward_pre_hook(hook))

    def _on_output(self, module: torch.nn.Module, layer: int | None, *, scale_input: bool) -> None:
        """Multiply the output by the hidden mask (and the layer's mask, for writers to the residual)."""
        if scale_input:
            self._pre(module, lambda x: x * self._rescale if self._rescale != 1.0 else x)

        def hook(_module: torch.nn.Module, _args: tuple, output: torch.Tensor) -> torch.Tensor:
            hidden = self.values.get("hidden")
            if scale_input and self._rescale != 1.0:
                output = output / self._rescale
            if hidden is not None:
                output = output * hidden.to(output.dtype)
            if layer is not None and "layer" in self.values:
                output = output * self.values["layer"][layer].to(output.dtype)
            return output

        self._handles.append(module.register_forward_hook(hook))

    def _head_input(self, layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def transform(x: torch.Tensor) -> torch.Tensor:
            heads = self.values.get("query_head")
            if heads is None:
                return x
            mask = heads[layer].to(x.dtype)
            return (x.unflatten(-1, (mask.numel(), -1)) * mask[:, None]).flatten(-2)
        return transform

    def _intermediate_input(self, layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
        def transform(x: torch.Tensor) -> torch.Tensor:
            inter = self.values.get("intermediate")
            return x if inter is None else x * inter[layer].to(x.dtype)
        return transform
