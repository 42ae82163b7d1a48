"""The models a run builds: whole from weights read one tensor at a time."""

import pytest
import torch
from transformers import AutoModelForCausalLM

from shearc.compiler.source import hf_config
from shearc.runtime.models import model_from_weights

from ..helpers import TINY_CONFIGS


@pytest.mark.parametrize("name", ["llama-tied", "gemma3", "phi3-fused"])
def test_a_model_from_weights_computes_what_its_source_computes_and_reads_a_tied_head_once(name):
    torch.manual_seed(0)
    source = AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS[name])).eval()
    state, read = source.state_dict(), []

    class Reading(dict):
        def __getitem__(self, key):
            read.append(key)
            return super().__getitem__(key)

    model = model_from_weights(TINY_CONFIGS[name], Reading(state), torch.float32)
    ids = torch.randint(0, 512, (2, 9), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, source(input_ids=ids).logits)
    tied = TINY_CONFIGS[name]["tie_word_embeddings"]
    assert len(read) == len(set(read)) == len(state) - tied
    assert (model.lm_head.weight is model.model.embed_tokens.weight) == tied


def test_a_weight_that_is_not_there_is_named():
    state = AutoModelForCausalLM.from_config(hf_config(TINY_CONFIGS["llama-mha"])).state_dict()
    del state["model.norm.weight"]
    with pytest.raises(KeyError, match=r"model\.norm\.weight"):
        model_from_weights(TINY_CONFIGS["llama-mha"], state, torch.float32)
