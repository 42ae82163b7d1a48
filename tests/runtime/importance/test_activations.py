"""Minitron's activation statistics: each unit scored from the tensor and with the reductions the reference uses."""

import torch

from shearc.compiler.families import ADAPTERS
from shearc.runtime.importance.activations import ActivationStatistics, block_influence, channel_statistic

from .test_selection import _samples, _setup


def test_a_channel_scores_the_l2_over_windows_of_its_mean_absolute_activation():
    x = torch.tensor([[[1.0, -2.0], [3.0, 0.0]], [[-1.0, 4.0], [1.0, 0.0]]])  # [batch 2, tokens 2, channels 2]
    # window 0: means (2, 1); window 1: means (1, 2) -> squares summed: (5, 5)
    torch.testing.assert_close(channel_statistic(x), torch.tensor([5.0, 5.0]))


def test_block_influence_is_zero_for_a_block_that_changes_nothing_and_one_for_an_orthogonal_output():
    x = torch.randn(2, 5, 8)
    assert block_influence(x, x).abs().item() < 1e-6
    y = torch.zeros_like(x)
    y[..., 0], x2 = 1.0, torch.zeros_like(x)
    x2[..., 1] = 1.0
    assert block_influence(x2, y).item() == 1.0


def test_heads_groups_channels_and_layers_come_from_the_reference_tensors():
    config, source, model = _setup("mistral-gqa")
    adapter = ADAPTERS.get(config["architectures"][0])
    shape = source.shape
    with torch.no_grad():  # layer 2 adds nothing to the residual stream: its block influence is 0
        block = model.model.layers[2]
        block.self_attn.o_proj.weight.zero_()
        block.mlp.down_proj.weight.zero_()
    seen: dict = {}
    layer = model.model.layers[1]
    layer.self_attn.o_proj.register_forward_pre_hook(lambda _m, a: seen.setdefault("attn", []).append(a[0].clone()))
    layer.mlp.down_proj.register_forward_pre_hook(lambda _m, a: seen.setdefault("inter", []).append(a[0].clone()))
    statistics = ActivationStatistics(model, adapter)
    windows = torch.stack(_samples(config["vocab_size"], count=4))
    with torch.no_grad():
        model(input_ids=windows[:2])
        model(input_ids=windows[2:])
    statistics.remove()
    scores = statistics.unit_scores(shape)
    attn = torch.cat(seen["attn"])  # [4 windows, tokens, heads x head_dim]
    per_channel = attn.abs().mean(1).pow(2).sum(0).sqrt().reshape(shape.heads, shape.head_dim)
    torch.testing.assert_close(scores[("query_head", 1)], per_channel.norm(dim=1))
    groups = per_channel.reshape(shape.kv_heads, shape.group_size * shape.head_dim).norm(dim=1)  # group-major heads
    torch.testing.assert_close(scores[("kv_group", 1)], groups)
    torch.testing.assert_close(scores[("intermediate", 1)], torch.cat(seen["inter"]).abs().mean(1).pow(2).sum(0).sqrt())
    assert scores[("layer", 2)].item() < 1e-6 < min(scores[("layer", i)].item() for i in (0, 1, 3))
    assert scores[("hidden", None)].shape == (shape.hidden,) and (scores[("hidden", None)] > 0).all()
