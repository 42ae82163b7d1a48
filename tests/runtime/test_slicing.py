"""The sliced dense model computes what the masked model computes (fp32, max abs diff < 1e-4)."""

import dataclasses

import pytest
import torch

from shearc.compiler.families import ADAPTERS, follow_kept_layers
from shearc.compiler.source import hf_config
from shearc.runtime.masks.hard_concrete import Constants, deterministic_mask
from shearc.runtime.masks.hooks import MaskHooks
from shearc.runtime.slicing import finalize_state, kept_layers, kept_units

from ..helpers import TINY_CONFIGS


def _model(config):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config(config)).eval()
    with torch.no_grad():  # random norms and biases, so folding them is tested too
        for name, param in model.named_parameters():
            if name.endswith("norm.weight") or name.endswith("bias"):
                param.uniform_(0.5, 1.5)
    return model


def _masked_logits(model, adapter, masks, ids):
    hooks = MaskHooks(model, adapter)
    hooks.values = masks
    with torch.no_grad():
        masked = model(input_ids=ids).logits
    hooks.remove()
    return masked


def _masks(shape, kinds, generator, *, keep_groups=None, keep_heads_per_group=None, soft=True):
    """Deterministic hard-concrete masks (exactly k per row, soft values) of the given kinds."""
    constants = Constants()

    def top(rows, n, keep):
        values = deterministic_mask(torch.randn(rows, n, generator=generator) * 2, keep, constants, 0.8)
        return values if soft else (values > 0).float()

    masks = {}
    if "layer" in kinds:
        masks["layer"] = top(1, shape.layers, shape.layers - 1)[0]
    if "hidden" in kinds:
        masks["hidden"] = top(1, shape.hidden, shape.hidden // 2)[0]
    if "intermediate" in kinds:
        masks["intermediate"] = top(shape.layers, shape.intermediate, shape.intermediate // 2)
    if "kv_group" in kinds:  # one value per KV group, repeated over its query heads
        groups = top(shape.layers, shape.kv_heads, keep_groups)
        masks["query_head"] = groups.repeat_interleave(shape.group_size, dim=1)
    if "query_head" in kinds:  # thin the query heads inside every group, the same count in each
        per_group = top(shape.layers * shape.kv_heads, shape.group_size, keep_heads_per_group)
        masks["query_head"] = per_group.reshape(shape.layers, shape.heads)
    return masks


CASES = [
    ("llama-mha", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 4}),
    ("mistral-gqa", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 1}),
    ("mistral-gqa", {"query_head", "intermediate"}, {"keep_heads_per_group": 2}),
    ("qwen2-bias", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 1}),
    ("llama-tied", {"hidden", "kv_group", "intermediate"}, {"keep_groups": 2}),
    ("llama-tied", {"layer"}, {}),
    ("qwen3-qknorm", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 1}),
    ("qwen3-qknorm", {"query_head"}, {"keep_heads_per_group": 2}),
    ("gemma2", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 1}),
    ("gemma3", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 1}),
    ("gemma3", {"hidden"}, {}),
    ("phi3-fused", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 1}),
    ("phi3-fused", {"query_head"}, {"keep_heads_per_group": 2}),
    ("llama31-rope", {"layer", "hidden", "kv_group", "intermediate"}, {"keep_groups": 1}),
]


@pytest.mark.parametrize(("name", "kinds", "keep"), CASES, ids=[f"{c[0]}-{'+'.join(sorted(c[1]))}" for c in CASES])
@pytest.mark.parametrize("soft", [True, False], ids=["soft", "binary"])
def test_sliced_model_matches_masked_model(name, kinds, keep, soft):
    from transformers import AutoModelForCausalLM

    config = TINY_CONFIGS[name]
    adapter = ADAPTERS.get(config["architectures"][0])
    shape = adapter.shape_of(hf_config(config))
    model = _model(config)
    masks = _masks(shape, kinds, torch.Generator().manual_seed(1), soft=soft, **keep)
    ids = torch.randint(0, config["vocab_size"], (2, 17), generator=torch.Generator().manual_seed(2))
    masked = _masked_logits(model, adapter, masks, ids)

    state, target = finalize_state(model.state_dict(), adapter, masks, shape,
                                   tied=config["tie_word_embeddings"])
    dense_config = follow_kept_layers(adapter.config_for(config, target), config, kept_layers(masks, shape.layers))
    dense = AutoModelForCausalLM.from_config(hf_config(dense_config)).eval()
    dense.load_state_dict(state, strict=True)
    with torch.no_grad():
        sliced = dense(input_ids=ids).logits
    assert sum(p.numel() for p in dense.parameters()) < sum(p.numel() for p in model.parameters())
    assert (sliced - masked).abs().max().item() < 1e-4


def test_uneven_masks_are_refused():
    shape = ADAPTERS.get("LlamaForCausalLM").shape_of(hf_config(TINY_CONFIGS["llama-mha"]))
    inter = torch.ones(shape.layers, shape.intermediate)
    inter[0, :3] = 0
    with pytest.raises(ValueError, match="different numbers of intermediate"):
        kept_units({"intermediate": inter}, shape)
    gqa = ADAPTERS.get("MistralForCausalLM").shape_of(hf_config(TINY_CONFIGS["mistral-gqa"]))
    heads = torch.ones(gqa.layers, gqa.heads)
    heads[:, 0] = 0  # group 0 keeps 3 heads, group 1 keeps 4
    with pytest.raises(ValueError, match="same number"):
        kept_units({"query_head": heads}, gqa)


@pytest.mark.parametrize("offset", [0.0, 1.0])
def test_a_mask_folds_into_a_norm_as_the_norm_computes(offset):
    """A family whose RMSNorm computes x * (offset + w) (Gemma: 1 + w) gets the weight whose (offset + w') is the
    masked (offset + w): the norms' outputs, and nothing else, see the offset."""
    adapter = dataclasses.replace(ADAPTERS.get("LlamaForCausalLM"), norm_offset=offset)
    config = TINY_CONFIGS["llama-mha"]
    source = adapter.shape_of(hf_config(config))
    state = _model(config).state_dict()
    hidden = torch.ones(source.hidden)
    hidden[::2] = 0.0
    hidden[1::4] = 0.5  # soft kept values
    dense, _ = finalize_state(state, adapter, {"hidden": hidden}, source, tied=False)
    kept = hidden.nonzero().flatten()
    for name in ("model.norm.weight", "model.layers.1.input_layernorm.weight"):
        torch.testing.assert_close(offset + dense[name], (offset + state[name][kept]) * hidden[kept])
    projection = "model.layers.1.self_attn.o_proj.weight"  # not a norm: the mask multiplies its rows alone
    torch.testing.assert_close(dense[projection], state[projection][kept] * hidden[kept, None])


def test_per_layer_attention_types_follow_the_kept_layers():
    """Qwen2 with sliding windows from layer 2 on (full, full, sliding, sliding): keeping layers 0 and 2 needs
    (full, sliding); the first two layers' types (full, full) compute something else."""
    from transformers import AutoModelForCausalLM

    config = {**TINY_CONFIGS["qwen2-bias"], "num_hidden_layers": 4, "use_sliding_window": True, "sliding_window": 4,
              "max_window_layers": 2}
    adapter = ADAPTERS.get("Qwen2ForCausalLM")
    shape = adapter.shape_of(hf_config(config))
    model = _model(config)
    masks = {"layer": torch.tensor([1.0, 0.0, 1.0, 0.0])}
    ids = torch.randint(0, config["vocab_size"], (2, 17), generator=torch.Generator().manual_seed(2))
    masked = _masked_logits(model, adapter, masks, ids)
    state, target = finalize_state(model.state_dict(), adapter, masks, shape, tied=False)

    def sliced(dense_config):
        dense = AutoModelForCausalLM.from_config(hf_config(dense_config)).eval()
        dense.load_state_dict(state, strict=True)
        with torch.no_grad():
            return dense(input_ids=ids).logits

    kept = follow_kept_layers(adapter.config_for(config, target), config, [0, 2])
    assert kept["layer_types"] == ["full_attention", "sliding_attention"] and kept["max_window_layers"] == 1
    assert (sliced(kept) - masked).abs().max().item() < 1e-4
    first_two = adapter.config_for(config, target)
    assert first_two["layer_types"] == ["full_attention", "full_attention"]
    assert (sliced(first_two) - masked).abs().max().item() > 1e-3  # measured: 3.6e-3


def test_the_embedding_scale_change_is_the_one_the_model_applies_in_its_dtype():
    """Gemma multiplies the embedding by sqrt(hidden) cast to the weights' dtype: from 64 to 48 channels the
    fold is 8 / 6.9375 in bf16 (sqrt(48) = 6.928 rounds to 6.9375), 8 / sqrt(48) in fp32."""
    from shearc.runtime.slicing import embedding_scale_change

    assert embedding_scale_change(64, 48, torch.bfloat16) == 8 / 6.9375
    assert embedding_scale_change(64, 48, torch.float32) == pytest.approx(8 / 48**0.5, rel=1e-7)
    assert embedding_scale_change(64, 64, torch.bfloat16) == 1.0


@pytest.mark.parametrize("family", ["phi3-fused", "gemma3", "qwen3-qknorm"])
def test_permuting_in_place_gives_what_slicing_by_the_permutation_gives(family):
    """The finalize check permutes streamed tensors in place, a block of rows at a time: every parameter (fused
    ones part by part, 1-D norms, both axes of a projection) comes out as slice_parameter's copy, under the same
    name."""
    from shearc.runtime import slicing
    from shearc.runtime.logits_check import channel_permutation

    config = TINY_CONFIGS[family]
    adapter = ADAPTERS.get(config["architectures"][0])
    shape = adapter.shape_of(hf_config(config))
    permutation = channel_permutation(shape, torch.Generator().manual_seed(5))
    for name, param in _model(config).named_parameters():
        expected_name, expected = slicing.slice_parameter(name, param.detach(), adapter, permutation, shape)
        in_place = param.detach().clone()
        assert slicing.permute_tensor_(name, in_place, adapter, permutation, shape) is in_place
        assert expected_name == name and torch.equal(in_place, expected), name


def test_a_small_block_permutes_as_a_whole_one(monkeypatch):
    from shearc.runtime import slicing

    tensor = torch.randn(7, 5)
    order = torch.tensor([3, 0, 4, 1, 2])
    monkeypatch.setattr(slicing, "PERMUTE_BLOCK_BYTES", 1)  # one row at a time
    rows, columns = tensor.clone(), tensor.t().contiguous()
    slicing._reorder_(rows, 1, order)
    slicing._reorder_(columns, 0, order)
    assert torch.equal(rows, tensor[:, order]) and torch.equal(columns, tensor.t()[order])


def test_the_dense_tensors_come_one_at_a_time_as_finalize_state_gathers_them():
    """dense_tensors reads each source tensor once, in order, and yields the tied head once (as the embedding);
    an axis no mask cuts is not copied."""
    from shearc.runtime.slicing import dense_tensors

    config = TINY_CONFIGS["llama-tied"]
    adapter = ADAPTERS.get("LlamaForCausalLM")
    shape = adapter.shape_of(hf_config(config))
    state = _model(config).state_dict()
    inter = torch.zeros(shape.layers, shape.intermediate)
    inter[:, ::2] = 1
    read = []

    class Recording(dict):
        def __getitem__(self, key):
            read.append(key)
            return super().__getitem__(key)

    yielded = dict(dense_tensors(Recording(state), adapter, {"intermediate": inter}, shape, tied=True))
    gathered, _ = finalize_state(state, adapter, {"intermediate": inter}, shape, tied=True)
    assert adapter.output_head not in yielded and gathered.keys() == {*yielded, adapter.output_head}
    assert all(torch.equal(yielded[key], gathered[key]) for key in yielded)
    assert read == [adapter.embedding] + [key for key in state if key != adapter.output_head]  # its dtype first
    embedding = yielded[adapter.embedding]  # neither axis cut: the source's own tensor
    assert embedding.data_ptr() == state[adapter.embedding].data_ptr()
