"""Layer-wise reconstruction: each refit projection reaches the least-squares minimum on the inputs it was refit on
(against a float64 closed-form solve), and never ends with a larger error than selection left."""

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from shearc.compiler.families import ADAPTERS
from shearc.compiler.source import hf_config
from shearc.runtime.masks.hooks import MaskHooks
from shearc.runtime.reconstruction import output_error, reconstruct, refit_weight, site_masks

from ..helpers import TINY_CONFIGS


def _ridge(x: torch.Tensor, target: torch.Tensor, kept: torch.Tensor, damping: float) -> torch.Tensor:
    """argmin_V ||x target^T - x_K V^T||^2 + lambda ||V||^2 in float64, lambda as the module defines it, by the
    normal equations written out (not the module's Gram matrix or its Cholesky solve)."""
    xk = x[:, kept]
    lam = damping * (xk * xk).sum(0).mean()
    return torch.linalg.solve(xk.T @ xk + lam * torch.eye(len(kept), dtype=x.dtype), xk.T @ (x @ target.T)).T


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**16), width=st.integers(4, 24), out=st.integers(1, 8),
       damping=st.sampled_from([0.0, 0.05]), soft=st.booleans())
def test_a_refit_weight_is_the_closed_form_ridge_solution(seed, width, out, damping, soft):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(4 * width, width, generator=generator, dtype=torch.float64)
    weight = torch.randn(out, width, generator=generator, dtype=torch.float64)
    mask = (torch.rand(width, generator=generator) < 0.5).double()
    mask[0] = 1.0  # at least one kept channel
    reference = torch.ones(width, dtype=torch.float64)
    if soft:  # hard-concrete: kept units carry their soft values, the reference every unit's
        reference = torch.rand(width, generator=generator, dtype=torch.float64) * 0.5 + 0.5
        mask = mask * reference
    refit = refit_weight(weight, x.T @ x, mask, reference, damping)
    kept = torch.nonzero(mask).flatten()
    expected = _ridge(x, weight * reference, kept, damping)
    torch.testing.assert_close(refit[:, kept] * mask[kept], expected, rtol=1e-7, atol=1e-9)
    pruned = torch.nonzero(mask == 0).flatten()
    assert torch.equal(refit[:, pruned], weight[:, pruned])  # the mask zeroes them; slicing drops them


def _tiny(name):
    from transformers import AutoModelForCausalLM

    config = TINY_CONFIGS[name]
    adapter = ADAPTERS.get(config["architectures"][0])
    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf_config(config)).eval(), adapter, adapter.shape_of(hf_config(config))


def _masks(shape, generator, *, soft: bool):
    """Half the intermediate channels and one query head in two of every layer, random; soft values when `soft`."""
    inter = torch.stack([(torch.randperm(shape.intermediate, generator=generator) < shape.intermediate // 2).float()
                         for _ in range(shape.layers)])
    heads = torch.stack([torch.stack([torch.randperm(2, generator=generator) for _ in range(shape.heads // 2)])
                         .flatten().float() for _ in range(shape.layers)])
    masks = {"intermediate": inter, "query_head": heads}
    if not soft:
        return masks, None
    reference = {kind: torch.rand(mask.shape, generator=generator) * 0.5 + 0.5 for kind, mask in masks.items()}
    return {kind: mask * reference[kind] for kind, mask in masks.items()}, reference


def _site_inputs(model, adapter, masks, windows):
    """Every refit site's raw input (before its mask), in a plain forward of the masked model, as float64."""
    inputs, handles = {}, []
    for layer, block in enumerate(model.get_submodule(adapter.layer_prefix)):
        for kind, name in (("head", adapter.head_site), ("intermediate", adapter.intermediate_site)):
            def hook(_module, args, key=(layer, kind)):
                inputs.setdefault(key, []).append(args[0].detach().reshape(-1, args[0].shape[-1]).double())
            handles.append(block.get_submodule(name).register_forward_pre_hook(hook, prepend=True))
    hooks = MaskHooks(model, adapter)
    hooks.values = masks
    with torch.no_grad():
        for start in range(0, len(windows), 2):
            model(torch.stack(windows[start:start + 2]))
    hooks.remove()
    for handle in handles:
        handle.remove()
    return {key: torch.cat(parts) for key, parts in inputs.items()}


@pytest.mark.parametrize("name", ["mistral-gqa", "gemma3", "phi3-fused"])
@pytest.mark.parametrize("soft", [False, True], ids=["binary", "soft"])
def test_every_refit_layer_reaches_the_least_squares_minimum_on_its_calibration_inputs(name, soft):
    model, adapter, shape = _tiny(name)
    original = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(1)
    masks, reference = _masks(shape, generator, soft=soft)
    windows = [torch.randint(0, 512, (48,), generator=generator) for _ in range(8)]  # 384 tokens > any width
    refits = reconstruct(model, adapter, shape, masks, windows, damping=0.0, batch_size=2, reference=reference)
    assert len(refits) == 2 * shape.layers
    inputs = _site_inputs(model, adapter, masks, windows)  # layer l's inputs depend only on what came before it
    sites = {"head": adapter.head_site, "intermediate": adapter.intermediate_site}
    for layer in range(shape.layers):
        before = site_masks(reference or {}, shape, layer)
        for kind, mask in site_masks(masks, shape, layer).items():
            x = inputs[(layer, kind)]
            name = f"{adapter.layer_prefix}.{layer}.{sites[kind]}.weight"
            old = original.get_parameter(name).detach().double()
            new = model.get_parameter(name).detach().double()
            target = old * before.get(kind, torch.ones_like(mask)).double()
            kept = torch.nonzero(mask).flatten()
            best = _ridge(x, target, kept, 0.0)
            minimum = float(((x @ target.T - x[:, kept] @ best.T) ** 2).sum())
            reached = float(((x @ target.T - (x * mask.double()) @ new.T) ** 2).sum())
            selected = float(((x @ target.T - (x * mask.double()) @ old.T) ** 2).sum())
            assert reached <= minimum * (1 + 1e-4) + 1e-9, (layer, kind)
            assert reached < selected  # and it gained something over selection alone
            record = next(r for r in refits if r.layer == layer and r.module == sites[kind])
            # the run's own account (its Gram matrix summed from fp32 products, the weight rounded to fp32)
            assert record.error_after == pytest.approx(reached, rel=1e-2)


def test_a_refit_never_leaves_a_larger_error_than_selection():
    """A damping so strong that the solve shrinks the kept columns towards zero would raise the error: the weight
    then stays as selection left it, and no layer's error grows."""
    model, adapter, shape = _tiny("llama-mha")
    original = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(3)
    masks, _ = _masks(shape, generator, soft=False)
    windows = [torch.randint(0, 512, (32,), generator=generator) for _ in range(4)]
    for damping in (0.01, 1e6):
        model.load_state_dict(original.state_dict())
        refits = reconstruct(model, adapter, shape, masks, windows, damping=damping, batch_size=2)
        assert all(r.error_after <= r.error_before for r in refits)
        changed = [not torch.equal(model.get_parameter(f"{adapter.layer_prefix}.{r.layer}.{r.module}.weight"),
                                   original.get_parameter(f"{adapter.layer_prefix}.{r.layer}.{r.module}.weight"))
                   for r in refits]
        assert all(changed) if damping < 1 else not any(changed)


def test_the_error_from_the_gram_matrix_is_the_output_error():
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(40, 10, generator=generator, dtype=torch.float64)
    target, weight = torch.randn(3, 10, dtype=torch.float64), torch.randn(3, 10, dtype=torch.float64)
    mask = (torch.rand(10, generator=generator) < 0.6).double()
    direct = float(((x @ target.T - (x * mask) @ weight.T) ** 2).sum())
    assert output_error(target, weight, x.T @ x, mask) == pytest.approx(direct, rel=1e-10)


def test_pruned_layers_are_passed_through_and_not_refit():
    model, adapter, shape = _tiny("llama-mha")
    generator = torch.Generator().manual_seed(4)
    masks, _ = _masks(shape, generator, soft=False)
    masks["layer"] = torch.tensor([1.0, 0.0, 1.0, 1.0])
    windows = [torch.randint(0, 512, (32,), generator=generator) for _ in range(4)]
    refits = reconstruct(model, adapter, shape, masks, windows, damping=0.01, batch_size=2)
    assert sorted({r.layer for r in refits}) == [0, 2, 3]
