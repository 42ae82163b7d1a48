"""Reading models sharded over processes (FSDP2, gloo, 2 CPU processes): each holds its part, computes what the
whole model computes, and gathers any tensor whole again; evaluation with unequal windows per process."""

import time

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from shearc.compiler.source import hf_config
from shearc.runtime import distributed
from shearc.runtime.data.domains import DomainData
from shearc.runtime.data.evaluation import domain_eval_losses

from ..helpers import TINY_CONFIGS

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


def _source(name):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS[name])).eval()


def _on_meta(name):
    from accelerate import init_empty_weights
    from transformers import AutoModelForCausalLM

    with init_empty_weights(include_buffers=False):
        return AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS[name]))


def _domains():
    rng = np.random.default_rng(0)
    return [DomainData("a", np.zeros((1, 8), int), rng.integers(0, 512, size=43)),
            DomainData("b", np.zeros((1, 8), int), rng.integers(0, 512, size=21))]


def _reading(rank: int, out: str, name: str) -> None:
    torch.distributed.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=2)
    try:
        source = _source(name)
        state = source.state_dict()
        model = distributed.sharded_model(_on_meta(name), state, "model.layers", torch.float32, torch.device("cpu"))
        ids = torch.randint(0, 512, (2, 9), generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            same_logits = torch.equal(model(input_ids=ids).logits, source(input_ids=ids).logits)
        gathered = distributed.GatheredState(model)
        same_weights = all(torch.equal(gathered[key], value) for key, value in state.items())
        blocks = model.get_submodule("model.layers")
        held = sum(distributed.local(p).numel() for p in blocks.parameters())
        # a model training sharded (the root sharded too) gathers its tensors whole: the gloo path of `full`
        trained = _source(name)
        distributed.wrap(trained, torch.device("cpu"), "fsdp2", trained.get_submodule("model.layers"))
        trained_weights = all(torch.equal(distributed.full(p), state[key]) for key, p in trained.state_dict().items())
        losses = domain_eval_losses(model, _domains(), seq_len=8, max_sequences=5, batch_size=1)
        np.save(f"{out}/rank{rank}.npy", np.array([same_logits, same_weights, trained_weights,
                                                   held * 2 == sum(p.numel() for p in blocks.parameters()),
                                                   model.lm_head.weight is model.model.embed_tokens.weight
                                                   if source.config.tie_word_embeddings else True]))
        np.save(f"{out}/losses{rank}.npy", losses)
        torch.distributed.barrier()
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.parametrize("name", ["llama-tied", "gemma3", "phi3-fused"])
def test_a_sharded_model_read_from_weights_computes_and_gathers_what_the_whole_one_does(tmp_path, name):
    """Each process holds half of every decoder block (the root's weights whole, a tied head still the embedding);
    the logits equal the whole model's, every tensor gathers back to the source's, and the per-domain losses,
    with 5 windows a domain (3 forwards on one process, 2 on the other: the other runs one it does not count, as
    FSDP2 gathers each block in every process together), are one process's."""
    context = mp.start_processes(_reading, args=(str(tmp_path), name), nprocs=2, start_method="spawn", join=False)
    deadline = time.monotonic() + 240
    while not context.join(timeout=5):
        if time.monotonic() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail("the two processes did not finish (a collective left waiting)")
    single = domain_eval_losses(_source(name), _domains(), seq_len=8, max_sequences=5, batch_size=1)
    for rank in range(2):
        assert np.load(tmp_path / f"rank{rank}.npy").all()
        np.testing.assert_allclose(np.load(tmp_path / f"losses{rank}.npy"), single, rtol=1e-6)
