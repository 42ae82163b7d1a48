"""The chunked next-token loss equals transformers' own loss and gradients, soft-capping and biases included,
and never holds more than a chunk of logits."""

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from shearc.compiler.source import hf_config
from shearc.runtime import loss as loss_module
from shearc.runtime.loss import next_token_loss, sequence_losses

from ..helpers import TINY_CONFIGS


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS[name]))


def _plain_loss(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="none")


@pytest.mark.parametrize("name", ["llama-mha", "gemma2", "gemma3", "qwen2-bias", "phi3-fused"])
def test_losses_and_gradients_are_the_plain_computation(name, monkeypatch):
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 512 * 7)  # chunks of 7 tokens: several, the last short
    model = _model(name)
    ids = torch.randint(0, 512, (3, 20), generator=torch.Generator().manual_seed(1))
    plain = _plain_loss(model, ids)
    plain.mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    chunked = sequence_losses(model, ids)
    chunked.mean.backward()
    torch.testing.assert_close(chunked.rows, plain.view(3, 19).mean(1), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(chunked.mean, model(input_ids=ids, labels=ids).loss, rtol=1e-5, atol=1e-5)
    assert not chunked.rows.requires_grad
    for parameter_name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, expected[parameter_name], rtol=1e-4, atol=1e-6)


def test_gemma2s_soft_capping_is_applied():
    model = _model("gemma2")
    assert model.config.final_logit_softcapping == 30.0
    with torch.no_grad():  # logits far beyond the cap (a random init's are near 0, where tanh is the identity)
        model.model.norm.weight.fill_(300.0)
    ids = torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(2))
    uncapped = model.lm_head(model.model(input_ids=ids).last_hidden_state)[:, :-1]
    without_cap = F.cross_entropy(uncapped.reshape(-1, 512), ids[:, 1:].reshape(-1))
    with torch.no_grad():
        capped = sequence_losses(model, ids).mean
    assert abs(capped - without_cap) > 1e-4  # the cap changes the loss, and the chunked path applies it
    torch.testing.assert_close(capped, model(input_ids=ids, labels=ids).loss.detach(), rtol=1e-5, atol=1e-5)


def test_a_frozen_head_gets_no_gradient_and_the_body_still_does():
    model = _model("llama-mha")
    model.lm_head.requires_grad_(False)
    ids = torch.randint(0, 512, (2, 10), generator=torch.Generator().manual_seed(3))
    sequence_losses(model, ids).mean.backward()
    assert model.lm_head.weight.grad is None
    assert model.model.layers[0].mlp.up_proj.weight.grad.abs().sum() > 0


def test_no_more_than_a_chunk_of_logits_is_made(monkeypatch):
    """The head is handed zero positions; the loss makes its logits a chunk at a time."""
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 512 * 4)
    model = _model("llama-mha")
    ids = torch.randint(0, 512, (2, 16), generator=torch.Generator().manual_seed(4))
    shapes = []
    original = loss_module.chunk_logits
    monkeypatch.setattr(loss_module, "chunk_logits", lambda *a: shapes.append(a[0].shape) or original(*a))
    with next_token_loss(model, ids) as result:
        logits = model(input_ids=ids).logits
    assert logits.shape == (2, 0, 512)
    assert result.tokens.shape == (2, 15)
    assert max(shape[0] for shape in shapes) == 4 and sum(shape[0] for shape in shapes) == 30


def test_under_no_grad_no_gradient_is_made(monkeypatch):
    """Parameters require grad in evaluation too: only autograd's state decides whether the head's gradient is made
    (it costs two more matrix products over the vocabulary)."""
    model = _model("llama-mha")
    products = []
    original = torch.Tensor.__matmul__
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda a, b: products.append(1) or original(a, b))
    with torch.no_grad():
        sequence_losses(model, torch.randint(0, 512, (2, 10)))
    assert products == []
    sequence_losses(model, torch.randint(0, 512, (2, 10)))
    assert products


@pytest.mark.parametrize("name", ["llama-mha", "gemma2"])
def test_under_bf16_autocast_it_is_autocasts_plain_computation(name, monkeypatch):
    """Under autocast the head's products run in bf16 as plain autograd's do; losses and gradients agree with plain
    autograd under the same autocast to bf16's precision (eps 7.8e-3), not fp32's."""
    monkeypatch.setattr(loss_module, "CHUNK_ELEMENTS", 512 * 7)
    model = _model(name)
    ids = torch.randint(0, 512, (3, 20), generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        plain = _plain_loss(model, ids)
    plain.mean().backward()
    expected = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        chunked = sequence_losses(model, ids)
    chunked.mean.backward()
    torch.testing.assert_close(chunked.rows, plain.view(3, 19).mean(1), rtol=1e-2, atol=1e-2)
    for parameter_name, parameter in model.named_parameters():
        assert parameter.grad.dtype == torch.float32  # gradients of the fp32 master weights
        error = torch.linalg.vector_norm(parameter.grad - expected[parameter_name])
        assert error <= 2e-2 * torch.linalg.vector_norm(expected[parameter_name]) + 1e-6, parameter_name
