"""Activation statistics for Minitron's forward-only importance, gathered through hooks.

    prune: {method: activation, calibration_samples: 1024}

Every width unit is scored as NVIDIA Model Optimizer's Minitron scores it: per channel, the mean
|activation| over a window's tokens, squared and summed over the windows, with one square root at
the end (an L2 norm over the windows). Query heads: the output projection's input, L2 over the
head's channels; a KV group: L2 over all its heads' channels. Intermediate channels: the down
projection's input (the gated activation). Hidden channels: the outputs of every block's norms,
each norm's scores summed over norms and layers. Layers: block influence, 1 - cosine(the block's
input, its output) per token, averaged over a window's tokens and summed over windows.
"""

from __future__ import annotations

from typing import Any

import torch

from shearc.compiler.families import FamilyAdapter, Shape


def channel_statistic(activation: torch.Tensor) -> torch.Tensor:
    """[batch, tokens, channels] -> per channel, the sum over the batch of (mean |activation| over tokens)^2."""
    return activation.detach().float().abs().mean(1).pow(2).sum(0)


def block_influence(block_input: torch.Tensor, block_output: torch.Tensor) -> torch.Tensor:
    """1 - cosine(input, output) per token, averaged over the batch's tokens (ShortGPT's BI, Minitron's depth score)."""
    cosine = torch.nn.functional.cosine_similarity(block_input.detach().float(), block_output.detach().float(), dim=-1)
    return 1 - cosine.mean()


class ActivationStatistics:
    """Hooks that accumulate the statistics on every forward until `remove`."""

    def __init__(self, model: torch.nn.Module, adapter: FamilyAdapter) -> None:
        self.sums: dict[tuple[Any, ...], torch.Tensor] = {}
        self._handles: list[Any] = []
        for layer, block in enumerate(model.get_submodule(adapter.layer_prefix)):
            self._on_input(block.get_submodule(adapter.head_site), ("attn", layer))
            self._on_input(block.get_submodule(adapter.intermediate_site), ("inter", layer))
            for norm in adapter.block_norms:
                self._handles.append(block.get_submodule(norm).register_forward_hook(
                    lambda _m, _a, output, key=("norm", layer, norm): self._add(key, channel_statistic(output))))
            self._handles.append(block.register_forward_hook(self._influence(layer), with_kwargs=True))

    def _add(self, key: tuple[Any, ...], value: torch.Tensor) -> None:
        self.sums[key] = self.sums[key] + value if key in self.sums else value

    def _on_input(self, module: torch.nn.Module, key: tuple[Any, ...]) -> None:
        self._handles.append(module.register_forward_pre_hook(
            lambda _m, args: self._add(key, channel_statistic(args[0]))))

    def _influence(self, layer: int):
        def hook(_module: torch.nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            hidden = args[0] if args else kwargs["hidden_states"]
            self._add(("layer", layer), block_influence(hidden, output[0] if isinstance(output, tuple) else output))
        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def unit_scores(self, shape: Shape) -> dict[tuple[str, int | None], torch.Tensor]:
        """Every unit's score, keyed as the dependency graph's units are."""
        scores: dict[tuple[str, int | None], torch.Tensor] = {}
        hidden = torch.zeros(shape.hidden, device=self.sums[("attn", 0)].device)
        for layer in range(shape.layers):
            channels = self.sums[("attn", layer)].sqrt().reshape(shape.kv_heads, shape.group_size, shape.head_dim)
            scores[("query_head", layer)] = torch.linalg.vector_norm(channels, dim=2).flatten()
            scores[("kv_group", layer)] = torch.linalg.vector_norm(channels, dim=(1, 2))
            scores[("intermediate", layer)] = self.sums[("inter", layer)].sqrt()
            scores[("layer", layer)] = self.sums[("layer", layer)].reshape(1)
            for key, value in self.sums.items():
                if key[0] == "norm" and key[1] == layer:
                    hidden = hidden + value.sqrt()
        scores[("hidden", None)] = hidden
        return scores
