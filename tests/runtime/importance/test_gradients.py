"""The calibration gradients Taylor importance reads: batched sums, and the Fisher diagonal."""

import torch

from shearc.runtime.importance.gradients import accumulate_gradients

from .test_selection import _samples, _setup


def test_batched_first_order_gradients_are_the_mean_of_the_per_sample_ones():
    config, _, model = _setup("llama-tied")
    samples = _samples(config["vocab_size"], count=5)
    one_by_one, _ = accumulate_gradients(model, samples, second_order=False, batch_size=1)
    batched, _ = accumulate_gradients(model, samples, second_order=False, batch_size=2)  # 2 + 2 + 1
    assert all(p.grad is None for p in model.parameters())  # nothing left behind on the model
    expected = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    for sample in samples:
        model.zero_grad()
        model(input_ids=sample[None], labels=sample[None]).loss.backward()
        for name, param in model.named_parameters():
            expected[name] += param.grad / len(samples)
    for name in expected:
        torch.testing.assert_close(one_by_one[name], expected[name], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(batched[name], expected[name], rtol=1e-5, atol=1e-7)


def test_fisher_diagonal_is_the_mean_squared_per_sample_gradient():
    config, _, model = _setup("llama-tied")
    samples = _samples(config["vocab_size"], count=3)
    _, fisher = accumulate_gradients(model, samples, second_order=True)
    weight = model.model.layers[0].mlp.up_proj.weight
    squares = []
    for sample in samples:
        model.zero_grad()
        model(input_ids=sample[None], labels=sample[None]).loss.backward()
        squares.append(weight.grad.clone() ** 2)
    torch.testing.assert_close(fisher["model.layers.0.mlp.up_proj.weight"], torch.stack(squares).mean(0))


