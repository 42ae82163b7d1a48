"""Under torch.distributed (gloo, 2 CPU processes) the per-domain losses are all-reduced."""

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from shearc.runtime.data.domains import DomainData
from shearc.runtime.data.evaluation import domain_eval_losses


def _model():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=40, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def _domains():
    rng = np.random.default_rng(0)
    return [DomainData("a", np.zeros((1, 8), int), rng.integers(0, 40, size=43)),
            DomainData("b", np.zeros((1, 8), int), rng.integers(0, 40, size=21))]


def _worker(rank: int, out: str) -> None:
    # A file rendezvous: no TCP port to pick, so nothing another process can take between pick and bind.
    torch.distributed.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
    try:
        losses = domain_eval_losses(_model(), _domains(), seq_len=8, max_sequences=10, batch_size=2)
        np.save(f"{out}/rank{rank}.npy", losses)
        # Both ranks done with gloo before either tears it down: a rank leaving while its peer's pair is still
        # open aborted the process now and then ("terminate called without an active exception").
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")
def test_two_ranks_agree_with_one(tmp_path):
    mp.start_processes(_worker, args=(str(tmp_path),), nprocs=2, start_method="spawn")
    single = domain_eval_losses(_model(), _domains(), seq_len=8, max_sequences=10, batch_size=2)
    for rank in range(2):
        np.testing.assert_allclose(np.load(tmp_path / f"rank{rank}.npy"), single, rtol=1e-6)
