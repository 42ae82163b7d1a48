"""Under torch.distributed (gloo, 2 CPU processes) the ranks split the files and read each other's tokens."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from shearc.runtime.data import Preparer, load_domains

from ...helpers import WORDS, data_plan, tiny_tokenizer, write_jsonl

FILES = 6


def _data():
    return data_plan({"name": "a", "train": ["a*.jsonl"], "eval": []},
                     {"name": "b", "train": ["b*.jsonl"], "eval": ["b0.jsonl"]}, eval_fraction=0.2)


def _load(tmp: str, cache: str):
    """The domains, and the preparer that says which files this process tokenized."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(f"{tmp}/tok")
    preparer = Preparer(tokenizer, "text", Path(cache))
    return load_domains(_data(), base_dir=Path(tmp), tokenizer=tokenizer, seq_len=8, seed=3, cache_dir=Path(cache),
                        preparer=preparer), preparer


def _worker(rank: int, tmp: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2)
    try:
        domains, preparer = _load(tmp, f"{tmp}/shared")
        np.savez(f"{tmp}/rank{rank}.npz", *[np.asarray(d.train) for d in domains], *[d.eval for d in domains])
        Path(f"{tmp}/rank{rank}.json").write_text(json.dumps([p.name for p in preparer.stats.files]))
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_ranks_each_tokenize_half_the_files_and_load_what_one_process_loads(tmp_path):
    tiny_tokenizer(tmp_path / "tok", [" ".join(WORDS)])
    for number in range(FILES // 2):
        for name in "ab":
            write_jsonl(tmp_path / f"{name}{number}.jsonl",
                        [" ".join(WORDS[(i + number) % 10] for _ in range(5)) for i in range(20)])
    mp.start_processes(_worker, args=(str(tmp_path),), nprocs=2, start_method="spawn")
    tokenized = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in range(2)]
    assert sorted(tokenized[0] + tokenized[1]) == sorted(p.name for p in tmp_path.glob("[ab]*.jsonl"))
    assert [len(names) for names in tokenized] == [FILES // 2, FILES // 2]
    single, _ = _load(str(tmp_path), str(tmp_path / "alone"))
    expected = [np.asarray(d.train) for d in single] + [d.eval for d in single]
    for rank in range(2):
        arrays = np.load(tmp_path / f"rank{rank}.npz")
        assert len(arrays.files) == len(expected)
        for index, array in enumerate(expected):
            np.testing.assert_array_equal(arrays[f"arr_{index}"], array)


def _failing_worker(rank: int, tmp: str) -> None:
    from datetime import timedelta

    from shearc.errors import UserError

    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp}/rendezvous", rank=rank, world_size=2,
                                         timeout=timedelta(seconds=60))
    try:
        try:
            _load(tmp, f"{tmp}/shared")
            outcome = "loaded"
        except UserError as exc:
            outcome = exc.render()
        Path(f"{tmp}/rank{rank}.txt").write_text(outcome)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_a_file_one_rank_cannot_read_stops_every_rank(tmp_path):
    tiny_tokenizer(tmp_path / "tok", [" ".join(WORDS)])
    for number in range(FILES // 2):
        for name in "ab":
            write_jsonl(tmp_path / f"{name}{number}.jsonl", [" ".join(WORDS[:5])] * 20)
    (tmp_path / "a1.jsonl").write_text('{"text": "alpha"\n')  # one rank's share
    mp.start_processes(_failing_worker, args=(str(tmp_path),), nprocs=2, start_method="spawn")
    outcomes = [(tmp_path / f"rank{rank}.txt").read_text() for rank in range(2)]
    assert all("unreadable training data" in outcome for outcome in outcomes)
    assert any("a1.jsonl: cannot read as json" in outcome for outcome in outcomes)
