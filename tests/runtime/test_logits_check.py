"""The finalize check: a tolerance from the model's own rounding, that passes right slices and fails wrong ones."""

import pytest
import torch

from shearc.compiler.families import ADAPTERS
from shearc.compiler.source import hf_config
from shearc.runtime import slicing
from shearc.runtime.logits_check import (
    FLOOR_ULPS,
    SPREAD_FACTOR,
    channel_permutation,
    compare_logits,
    derived_tolerance,
    inverse,
    kl_divergence_sum,
    permute_channels_,
)
from shearc.runtime.models import build_dense
from shearc.runtime.slicing import finalize_state, kept_units

from ..helpers import TINY_CONFIGS, off_by_one

CONFIG = {**TINY_CONFIGS["mistral-gqa"], "num_hidden_layers": 6}


def _model():
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config(CONFIG)).eval()
    with torch.no_grad():  # norms away from 1, so the hidden mask's rescaling of them matters
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.uniform_(0.5, 1.5)
    return model


def _masks(shape):
    generator = torch.Generator().manual_seed(3)
    hidden = torch.zeros(shape.hidden)
    hidden[torch.randperm(shape.hidden, generator=generator)[:48]] = 1
    inter = torch.zeros(shape.layers, shape.intermediate)
    for layer in range(shape.layers):
        inter[layer, torch.randperm(shape.intermediate, generator=generator)[:128]] = 1
    heads = torch.ones(shape.layers, shape.heads)
    heads[:, :4] = 0  # the first KV group
    return {"hidden": hidden, "intermediate": inter, "query_head": heads}


def _windows(count=3, length=24):
    generator = torch.Generator().manual_seed(4)
    return [torch.randint(0, CONFIG["vocab_size"], (length,), generator=generator) for _ in range(count)]


def _dense(model, masks, adapter, shape):
    state, target = finalize_state(model.state_dict(), adapter, masks, shape, tied=False)
    return build_dense(adapter.config_for(CONFIG, target), state, adapter)


def test_permuting_channels_is_the_same_function_and_puts_every_weight_back():
    model = _model()
    adapter = ADAPTERS.get("MistralForCausalLM")
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    window = _windows(1)[0]
    with torch.no_grad():
        plain = model(input_ids=window[None]).logits
        permutation = channel_permutation(adapter.shape_of(model.config), torch.Generator().manual_seed(0))
        permute_channels_(model, adapter, permutation)
        moved = model(input_ids=window[None]).logits
        assert any(not torch.equal(p, before[n]) for n, p in model.named_parameters())
        permute_channels_(model, adapter, inverse(permutation))
    torch.testing.assert_close(moved, plain, rtol=0, atol=1e-4)  # rounding only
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def test_a_right_slice_passes_with_a_tolerance_from_its_own_rounding():
    model = _model()
    adapter = ADAPTERS.get("MistralForCausalLM")
    shape = adapter.shape_of(model.config)
    masks = _masks(shape)
    agreement = compare_logits(model, masks, _dense(model, masks, adapter, shape), adapter, _windows(), seed=0)
    assert agreement.passed and agreement.top1_agreement == 1.0 and agreement.kl < 1e-10
    assert agreement.tolerance == derived_tolerance(agreement.rounding_spread, agreement.logit_scale, torch.float32)
    assert agreement.tokens == 3 * 24 and agreement.dtype == "float32"


def test_a_slice_one_channel_off_fails_by_orders_of_magnitude(monkeypatch):
    model = _model()
    adapter = ADAPTERS.get("MistralForCausalLM")
    shape = adapter.shape_of(model.config)
    masks = _masks(shape)
    monkeypatch.setattr(slicing, "kept_units", lambda m, s: off_by_one(kept_units(m, s), s))
    broken = _dense(model, masks, adapter, shape)
    agreement = compare_logits(model, masks, broken, adapter, _windows(), seed=0)
    assert not agreement.passed and agreement.max_difference > 100 * agreement.tolerance
    assert agreement.kl > 1e-6
    forced = compare_logits(model, masks, broken, adapter, _windows(), seed=0, tolerance=1e3)  # the user's override
    assert forced.passed and forced.tolerance == 1e3


def test_the_tolerance_is_a_multiple_of_the_spread_never_below_the_dtypes_resolution():
    assert derived_tolerance(1e-4, 10.0, torch.float32) == SPREAD_FACTOR * 1e-4
    floor = FLOOR_ULPS * torch.finfo(torch.bfloat16).eps * 10.0
    assert derived_tolerance(0.0, 10.0, torch.bfloat16) == floor


def test_kl_in_fp32_is_close_to_fp64_near_and_far():
    """A right slice's divergences (1e-10 nats per position) within 1%, and a wrong one's (whole nats) to fp32's
    precision, against fp64 log-softmaxes."""
    generator = torch.Generator().manual_seed(0)

    def exact(p, q):
        log_p, log_q = p.double().log_softmax(-1), q.double().log_softmax(-1)
        return (log_p.exp() * (log_p - log_q)).sum().item()

    p = 3 * torch.randn(37, 4096, generator=generator)
    near = p + 1e-5 * torch.randn(37, 4096, generator=generator)
    far = torch.randn(37, 4096, generator=generator)
    assert 1e-9 < exact(p, near) < 1e-7
    assert kl_divergence_sum(p, near, rows=5) == pytest.approx(exact(p, near), rel=1e-2)
    assert kl_divergence_sum(p, far, rows=5) == pytest.approx(exact(p, far), rel=1e-6)
    mixed = torch.cat([near[:20], far[20:]])  # rows near and far in one chunk
    assert kl_divergence_sum(p, mixed, rows=37) == pytest.approx(exact(p, mixed), rel=1e-6)
    assert kl_divergence_sum(p, p) == 0.0


def test_the_dense_model_is_built_around_the_given_tensors_without_copying_them():
    model = _model()
    adapter = ADAPTERS.get("MistralForCausalLM")
    shape = adapter.shape_of(model.config)
    state, target = finalize_state(model.state_dict(), adapter, _masks(shape), shape, tied=False)
    dense = build_dense(adapter.config_for(CONFIG, target), state, adapter)
    assert all(p.data_ptr() == state[name].data_ptr() for name, p in dense.named_parameters())
    assert all(b.device == state[adapter.embedding].device for b in dense.buffers())


def test_models_held_in_bf16_are_checked_in_fp32_with_its_margin(monkeypatch):
    """Where the plan computes in bf16 the source is held in bf16: it is sliced into fp32 and the check computes in
    fp32 all the same, so a right slice passes as it does in fp32 and one channel off still fails by orders of
    magnitude; the masked model is left in bf16, every weight as it was."""
    model = _model()
    for param in model.parameters():  # the weights only, as from_pretrained(dtype=bfloat16) holds them: the rotary
        param.data = param.data.to(torch.bfloat16)  # frequencies stay fp32 (bf16 ones would differ from the dense's)
    adapter = ADAPTERS.get("MistralForCausalLM")
    shape = adapter.shape_of(model.config)
    masks = _masks(shape)
    dense = _dense(model, masks, adapter, shape)
    assert {p.dtype for p in dense.parameters()} == {torch.float32}  # norms' folds are exact, not rounded to bf16
    before = [param.detach().clone() for param in model.parameters()]
    agreement = compare_logits(model, masks, dense, adapter, _windows(), seed=0)
    assert agreement.passed and agreement.top1_agreement == 1.0 and agreement.kl < 1e-10
    assert agreement.dtype == "float32" and agreement.tolerance < 1e-5  # computed in bf16 they differ by 6e-3
    for param, was in zip(model.parameters(), before, strict=True):
        assert param.dtype == torch.bfloat16 and torch.equal(param, was)
    monkeypatch.setattr(slicing, "kept_units", lambda m, s: off_by_one(kept_units(m, s), s))
    broken = compare_logits(model, masks, _dense(model, masks, adapter, shape), adapter, _windows(), seed=0)
    assert not broken.passed and broken.max_difference > 100 * broken.tolerance


def test_a_gemma_held_in_bf16_is_sliced_to_apply_the_embedding_scale_the_source_applied():
    """Gemma scales its embeddings by sqrt(hidden), a buffer of the dtype the model is loaded in: a bf16 source
    applies bf16(sqrt(d)). The dense model, weights in fp32, is built with its buffers in the source's dtype so that
    it applies the scale the fold was computed for; built in fp32 it would not, and the check says so."""
    from transformers import AutoModelForCausalLM

    config = TINY_CONFIGS["gemma3"]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config(config), dtype=torch.bfloat16).eval()  # as from_pretrained
    adapter = ADAPTERS.get("Gemma3ForCausalLM")
    shape = adapter.shape_of(model.config)
    hidden = torch.zeros(shape.hidden)
    hidden[torch.randperm(shape.hidden, generator=torch.Generator().manual_seed(1))[:48]] = 1  # sqrt(48): inexact
    state, target = finalize_state(model.state_dict(), adapter, {"hidden": hidden}, shape, tied=True)
    windows = [torch.randint(0, config["vocab_size"], (24,), generator=torch.Generator().manual_seed(2))]
    built = {held_as: build_dense(adapter.config_for(config, target), dict(state), adapter, held_as)
             for held_as in (torch.bfloat16, None)}
    right = compare_logits(model, {"hidden": hidden}, built[torch.bfloat16], adapter, windows, seed=0)
    assert right.passed and right.top1_agreement == 1.0, right
    in_fp32 = compare_logits(model, {"hidden": hidden}, built[None], adapter, windows, seed=0)
    assert not in_fp32.passed, in_fp32
