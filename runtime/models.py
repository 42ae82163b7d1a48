"""The models a run holds: the source as loaded from disk, and the dense target built around its weights.

The source loads straight onto its device in the dtype the plan computes in. The dense model's
parameters are created on the meta device and the given tensors assigned in: no random
initialisation runs and no second copy of the weights is made (a 7B source pruned to 1.3B
needs the source plus the 1.3B result, not plus another 1.3B of noise). Buffers that are not
weights (rotary frequencies) are built for real, as transformers builds them. A streamed dense model holds
no weights at all: its modules read them from disk as they run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from shearc.compiler.families import FamilyAdapter
from shearc.compiler.source import hf_config

from .verify import VerifiedPlan


def load_source_weights(verified: VerifiedPlan, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """The source model from its directory, in `dtype` (see precision.py), on `device`."""
    from transformers import AutoModelForCausalLM

    trust = verified.plan.source.trust_remote_code
    return AutoModelForCausalLM.from_pretrained(verified.model_dir, dtype=dtype, trust_remote_code=trust,
                                                device_map=str(device))


def meta_model(config: dict[str, Any], held_as: torch.dtype) -> torch.nn.Module:
    """A model of `config` whose parameters are on the meta device (no memory, no initialisation) and whose buffers
    are built for real in `held_as` (see build_dense)."""
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(hf_config(config), dtype=held_as)


def build_dense(config: dict[str, Any], state: dict[str, torch.Tensor], adapter: FamilyAdapter,
                held_as: torch.dtype | None = None) -> torch.nn.Module:
    """A model of `config` around the tensors of `state` (not copied). Its buffers are computed in `held_as` (the
    state's dtype if None): pass the dtype the source was held in, since some follow it (Gemma's embedding scale,
    sqrt(hidden), is a buffer of the load dtype: 25.25 in bf16 for 25.298), and the dense model must apply the
    scale the source applied, whatever dtype its own weights are in."""
    tied = bool(getattr(hf_config(config), "tie_word_embeddings", False))
    if tied:  # safetensors files hold a tied tensor once, under either name (save_model keeps lm_head's)
        one = state[adapter.embedding] if adapter.embedding in state else state[adapter.output_head]
        state = {**state, adapter.embedding: one, adapter.output_head: one}
    model = meta_model(config, held_as or state[adapter.embedding].dtype)
    model.load_state_dict(state, strict=True, assign=True)
    if tied:  # assignment made two parameters of the one tensor; make them one again
        model.tie_weights()
    return model.to(state[adapter.embedding].device)  # the buffers (built on the CPU) join the weights


def model_from_weights(config: dict[str, Any], weights: Mapping[str, torch.Tensor], dtype: torch.dtype,
                       device: torch.device | str = "cpu", held_as: torch.dtype | None = None) -> torch.nn.Module:
    """A model of `config` whole in memory, its parameters read from `weights` (a lazy mapping by state_dict name)
    one at a time in `dtype`, a tied one once; buffers built in `held_as` (as build_dense). Unlike from_pretrained,
    no file stays mapped, so the memory is the model's and no more."""
    model = meta_model(config, held_as or dtype)
    model.tie_weights()  # as the config says: a tied head is then read once, under the embedding's name
    state = {name: weights[name].to(device, dtype) for name, _ in model.named_parameters()}
    model.load_state_dict(state, strict=False, assign=True)
    model.tie_weights()
    left = [name for name, param in model.named_parameters() if param.is_meta]
    if left:
        raise KeyError(f"no weights read for {left[:5]}")
    return model.to(device).eval()


def dense_from_file(config: dict[str, Any], path: Path, adapter: FamilyAdapter,
                    device: torch.device | str = "cpu", held_as: torch.dtype | None = None) -> torch.nn.Module:
    """The dense model saved in a checkpoint's safetensors file (`held_as`: as build_dense)."""
    return build_dense(config, load_file(path, device=str(device)), adapter, held_as)


def streamed_dense(config: dict[str, Any], weights: Mapping[str, torch.Tensor], device: torch.device | str = "cpu",
                   held_as: torch.dtype | None = None, dtype: torch.dtype = torch.float32) -> torch.nn.Module:
    """A model of `config` that holds no weights: each module reads its own from `weights` (dense_shards'
    ShardedWeights, tensors in `dtype`) when it runs and lets them go when it returns (accelerate's offload hooks),
    so a forward holds one module's weights at a time. Buffers are built in `held_as` (as build_dense). For
    reading only: what the finalize check runs the dense model it wrote as."""
    from accelerate.hooks import attach_align_device_hook

    model = meta_model(config, held_as or dtype)
    for param in model.parameters():  # on the meta device: the hooks load each weight in this dtype
        param.data = param.data.to(dtype)
    attach_align_device_hook(model, execution_device=torch.device(device), offload=True, weights_map=weights)
    return model.eval()
