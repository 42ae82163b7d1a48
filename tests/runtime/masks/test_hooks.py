"""Masks through forward hooks on an unmodified transformers model: each kind multiplies where the adapter says."""

import math

import torch

from shearc.compiler.families import ADAPTERS
from shearc.compiler.source import hf_config
from shearc.runtime.masks.hooks import MaskHooks, norm_rescale

from ...helpers import TINY_CONFIGS
from ..test_slicing import _model


def test_hooks_change_nothing_without_masks_and_remove_cleanly():
    config = TINY_CONFIGS["qwen2-bias"]
    adapter = ADAPTERS.get(config["architectures"][0])
    model = _model(config)
    ids = torch.randint(0, 512, (1, 9), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        hooks = MaskHooks(model, adapter)
        assert torch.equal(model(input_ids=ids).logits, plain)
        hooks.values = {"hidden": torch.zeros(64)}
        assert not torch.equal(model(input_ids=ids).logits, plain)
        hooks.remove()
        assert torch.equal(model(input_ids=ids).logits, plain)


def test_the_norm_rescale_makes_a_norm_average_over_the_kept_channels_only():
    hidden = torch.tensor([1.0, 0.0, 0.5, 0.0, 0.0, 1.0, 1.0, 0.0])
    assert norm_rescale(hidden) == math.sqrt(8 / 4) and norm_rescale(None) == 1.0
    assert norm_rescale(torch.ones(8)) == 1.0
    x = torch.randn(3, 8) * (hidden != 0)  # the residual stream: masked channels are exactly 0
    norm = torch.nn.RMSNorm(8, eps=1e-6)
    scale = norm_rescale(hidden)
    kept = hidden.nonzero().flatten()
    torch.testing.assert_close((norm(x * scale) / scale)[:, kept], torch.nn.RMSNorm(4, eps=1e-6)(x[:, kept]))


def test_each_kind_masks_its_own_site():
    """A zero layer mask removes that layer's contribution; a zero head or intermediate mask row silences the
    o_proj or down_proj input of that layer only."""
    config = TINY_CONFIGS["llama-mha"]
    adapter = ADAPTERS.get(config["architectures"][0])
    model = _model(config)
    shape = adapter.shape_of(hf_config(config))
    seen = {}
    for layer in range(shape.layers):
        block = model.get_submodule(adapter.layer_prefix)[layer]
        block.get_submodule(adapter.head_site).register_forward_hook(
            lambda _m, args, _o, layer=layer: seen.__setitem__(("head", layer), args[0].clone()))
        block.get_submodule(adapter.intermediate_site).register_forward_hook(
            lambda _m, args, _o, layer=layer: seen.__setitem__(("inter", layer), args[0].clone()))
    hooks = MaskHooks(model, adapter)
    heads = torch.ones(shape.layers, shape.heads)
    heads[1, 2] = 0.0
    inter = torch.ones(shape.layers, shape.intermediate)
    inter[2, :5] = 0.0
    hooks.values = {"query_head": heads, "intermediate": inter}
    ids = torch.randint(0, 512, (1, 7), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(input_ids=ids)
    width = shape.head_dim
    assert torch.all(seen[("head", 1)][..., 2 * width:3 * width] == 0)
    assert torch.all(seen[("head", 0)][..., 2 * width:3 * width] != 0)
    assert torch.all(seen[("inter", 2)][..., :5] == 0) and torch.all(seen[("inter", 1)][..., :5] != 0)
    hooks.remove()
