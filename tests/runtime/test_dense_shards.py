"""The dense model on disk: shards written as they fill, read back one tensor at a time, streamed into a model."""

import json

import pytest
import torch

from shearc.compiler.families import ADAPTERS
from shearc.compiler.source import hf_config
from shearc.runtime.dense_shards import INDEX, ShardedWeights, load_shards, write_shards
from shearc.runtime.models import build_dense, streamed_dense
from shearc.runtime.slicing import dense_tensors, finalize_state

from ..helpers import TINY_CONFIGS


def _tensors():
    generator = torch.Generator().manual_seed(0)
    return {f"t{i}": torch.randn(16, 8 * (i + 1), generator=generator) for i in range(6)}  # 512 B .. 3 KiB


def test_shards_hold_every_tensor_as_given_and_fill_up_to_their_size(tmp_path):
    tensors = _tensors()
    weight_map = write_shards(tensors.items(), tmp_path / "dense", shard_bytes=4096)
    files = sorted({*weight_map.values()})
    assert files == [f"model-0000{n}-of-0000{len(files)}.safetensors" for n in range(1, len(files) + 1)]
    assert 1 < len(files) < len(tensors)  # several tensors to a shard, several shards
    index = json.loads((tmp_path / "dense" / INDEX).read_text())
    assert index["weight_map"] == weight_map and set(weight_map) == set(tensors)
    assert index["metadata"]["total_size"] == sum(t.numel() * 4 for t in tensors.values())
    for name in files:  # no shard over the size unless one tensor alone is
        held = [key for key, file in weight_map.items() if file == name]
        assert len(held) == 1 or sum(tensors[key].numel() * 4 for key in held) <= 4096
    loaded = load_shards(tmp_path / "dense")
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[k], v) for k, v in tensors.items())


def test_a_failure_while_writing_leaves_the_earlier_directory_whole(tmp_path):
    write_shards(_tensors().items(), tmp_path / "dense", shard_bytes=4096)
    before = {p.name: p.read_bytes() for p in (tmp_path / "dense").iterdir()}

    def failing():
        yield from list(_tensors().items())[:4]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_shards(failing(), tmp_path / "dense", shard_bytes=1024)
    assert {p.name: p.read_bytes() for p in (tmp_path / "dense").iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["dense"]  # no staging directory left


def test_weights_are_read_one_at_a_time_under_aliases_and_transforms(tmp_path):
    tensors = _tensors()
    write_shards(tensors.items(), tmp_path / "dense", shard_bytes=4096)
    weights = ShardedWeights(tmp_path / "dense", aliases={"head": "t2"})
    assert set(weights) == {*tensors, "head"} and len(weights) == len(tensors) + 1
    assert torch.equal(weights["head"], tensors["t2"])
    doubled = weights.with_transform(lambda name, tensor: tensor * (2 if name == "t2" else 1))
    assert torch.equal(doubled["head"], 2 * tensors["t2"]) and torch.equal(doubled["t1"], tensors["t1"])
    with pytest.raises(KeyError):
        weights["missing"]




def test_row_blocks_read_a_tensor_a_block_of_rows_at_a_time_under_aliases(tmp_path):
    tensors = {**_tensors(), "scalar": torch.tensor(3.0), "vector": torch.arange(10.0)}
    write_shards(tensors.items(), tmp_path / "dense", shard_bytes=4096)
    weights = ShardedWeights(tmp_path / "dense", {"head": "t5"})
    blocks = list(weights.row_blocks("head", block_bytes=4 * 48 * 5))  # t5 rows are 48 fp32 values: 5 rows a block
    assert [start for start, _ in blocks] == [0, 5, 10, 15] and [len(rows) for _, rows in blocks] == [5, 5, 5, 1]
    assert torch.equal(torch.cat([rows for _, rows in blocks]), tensors["t5"])
    assert torch.equal(torch.cat([rows for _, rows in weights.row_blocks("vector", block_bytes=12)]),
                       tensors["vector"])
    assert [(start, float(value)) for start, value in weights.row_blocks("scalar")] == [(0, 3.0)]


@pytest.mark.parametrize("family", ["llama-tied", "gemma3", "phi3-fused"])
def test_a_streamed_model_computes_what_the_model_in_memory_computes(tmp_path, family):
    """Bit for bit: the same weights, the same buffers (Gemma's embedding scale in the source's dtype), a tied head
    read through its alias, fused projections as stored; and it holds no weights between forwards."""
    from transformers import AutoModelForCausalLM

    config = TINY_CONFIGS[family]
    torch.manual_seed(0)
    source = AutoModelForCausalLM.from_config(hf_config(config)).eval()
    adapter = ADAPTERS.get(config["architectures"][0])
    shape = adapter.shape_of(source.config)
    masks = {"hidden": (torch.arange(shape.hidden) % 4 != 0).float(),
             "intermediate": (torch.arange(shape.intermediate) % 2 == 0).float().expand(shape.layers, -1)}
    tied = bool(source.config.tie_word_embeddings)
    write_shards(dense_tensors(source.state_dict(), adapter, masks, shape, tied=tied), tmp_path / "dense",
                 shard_bytes=2**14)
    state, target = finalize_state(source.state_dict(), adapter, masks, shape, tied=tied)
    dense_config = adapter.config_for(config, target)
    in_memory = build_dense(dense_config, state, adapter, torch.bfloat16).eval()
    weights = ShardedWeights(tmp_path / "dense", {adapter.output_head: adapter.embedding} if tied else None)
    streamed = streamed_dense(dense_config, weights, held_as=torch.bfloat16)
    ids = torch.randint(0, config["vocab_size"], (2, 11), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(streamed(input_ids=ids).logits, in_memory(input_ids=ids).logits)
    assert all(p.is_meta for p in streamed.parameters())
