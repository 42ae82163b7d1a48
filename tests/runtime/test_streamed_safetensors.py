"""Safetensors files written a tensor at a time: the bytes the safetensors library writes for the same tensors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.torch import save, save_file

from shearc.runtime.streamed_safetensors import DTYPE_NAMES, header, save_pretrained_groups, write_file

NAMES = st.text(alphabet="abcdefghijklmnopqrstuvwxyz._0123456789", min_size=1, max_size=12)
ENTRY = st.tuples(st.sampled_from(sorted(DTYPE_NAMES, key=str)), st.lists(st.integers(0, 4), max_size=3))


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(NAMES, ENTRY, min_size=1, max_size=6), st.sampled_from([{"format": "pt"}, None]))
def test_the_header_is_the_librarys(entries, metadata):
    """Names, dtypes (mixed: the library orders a file by dtype, then by name), shapes (empty ones too), with and
    without metadata."""
    tensors = {name: torch.zeros(shape, dtype=dtype) for name, (dtype, shape) in entries.items()}
    written = save(tensors, metadata=metadata)
    head, order = header([(name, dtype, shape) for name, (dtype, shape) in entries.items()], metadata or {})
    assert written[:len(head)] == head
    assert len(order) == len(entries)


def test_a_file_written_a_tensor_at_a_time_is_save_files_bytes(tmp_path):
    generator = torch.Generator().manual_seed(0)
    tensors = {"b.weight": torch.randn(5, 3, generator=generator).to(torch.bfloat16),
               "a.weight": torch.randn(7, generator=generator).to(torch.bfloat16),
               "c": torch.tensor(2.5, dtype=torch.bfloat16)}
    read = []

    def reading(name):
        read.append(name)
        return tensors[name]

    write_file(tmp_path / "streamed.safetensors", [(n, t.dtype, t.shape) for n, t in tensors.items()], reading,
               {"format": "pt"})
    save_file(tensors, tmp_path / "whole.safetensors", metadata={"format": "pt"})
    assert (tmp_path / "streamed.safetensors").read_bytes() == (tmp_path / "whole.safetensors").read_bytes()
    assert read == ["a.weight", "b.weight", "c"]  # each once, in the order its bytes follow the header


def test_a_tensor_not_as_planned_is_refused_before_its_bytes(tmp_path):
    with pytest.raises(ValueError, match=r"w \[3\] torch.float32, planned \[4\] torch.float32"):
        write_file(tmp_path / "f.safetensors", [("w", torch.float32, (4,))], lambda _: torch.zeros(3), {})


def test_groups_follow_save_pretrained():
    """A tensor larger than a shard alone, written as it comes; the one filling goes on."""
    sizes = [("a", 40), ("b", 50), ("big", 500), ("c", 20), ("d", 90)]
    assert save_pretrained_groups(sizes, 100) == [["big"], ["a", "b"], ["c"], ["d"]]
    assert save_pretrained_groups(sizes[:2], 100) == [["a", "b"]]
