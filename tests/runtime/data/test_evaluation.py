import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import LlamaConfig, LlamaForCausalLM

from shearc.runtime.data.domains import DomainData
from shearc.runtime.data.evaluation import domain_eval_losses


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64)
    return LlamaForCausalLM(config).eval()


def test_eval_windows_keep_the_tail_and_drop_single_tokens():
    def lengths(stream, limit=10, bos=None):
        return [len(w) for w in DomainData("a", np.zeros((1, 4), int), stream, bos).eval_windows(4, limit)]

    assert lengths(np.arange(10)) == [4, 4, 2]
    assert lengths(np.arange(9)) == [4, 4]
    assert len(lengths(np.arange(100), limit=3)) == 3
    assert lengths(np.arange(10, 20), bos=1) == [4, 4, 4, 2]  # BOS and 3 stream tokens each: 3 + 3 + 3 + 1


def test_windows_begun_with_bos_are_scored_as_transformers_scores_them(model):
    tokens = np.random.default_rng(2).integers(3, 50, size=14)
    (loss,) = domain_eval_losses(model, [DomainData("a", np.zeros((1, 8), int), tokens, window_bos=1)], seq_len=8,
                                 max_sequences=10, batch_size=4)
    with torch.no_grad():  # [1, t0..t6], [1, t7..t13]: 7 predictions each, the first from BOS alone
        plain = [model(input_ids=torch.as_tensor(np.r_[1, part])[None], labels=torch.as_tensor(np.r_[1, part])[None])
                 .loss.item() for part in (tokens[:7], tokens[7:])]
    assert loss == pytest.approx(np.mean(plain), rel=1e-5)


def test_loss_is_token_weighted_over_chunks(model):
    rng = np.random.default_rng(0)
    tokens = rng.integers(0, 50, size=11)  # chunks of 8 and 3 tokens: 7 and 2 predictions
    (loss,) = domain_eval_losses(model, [DomainData("a", np.zeros((1, 8), int), tokens)], seq_len=8,
                                 max_sequences=10, batch_size=4)
    per_token = []
    with torch.no_grad():
        for chunk in (tokens[:8], tokens[8:]):
            ids = torch.as_tensor(chunk)[None]
            logits = model(input_ids=ids).logits[0, :-1]
            per_token.extend(F.cross_entropy(logits, ids[0, 1:], reduction="none").tolist())
    assert loss == pytest.approx(np.mean(per_token), rel=1e-6)
    chunk_means = [np.mean(per_token[:7]), np.mean(per_token[7:])]
    assert loss != pytest.approx(np.mean(chunk_means), rel=1e-6)  # not a mean of chunk means


def test_each_domain_gets_its_own_loss(model):
    rng = np.random.default_rng(1)
    repeated = np.tile(np.array([3, 4]), 16)
    domains = [DomainData("noise", np.zeros((1, 8), int), rng.integers(0, 50, size=32)),
               DomainData("repeat", np.zeros((1, 8), int), repeated)]
    losses = domain_eval_losses(model, domains, seq_len=8, max_sequences=4, batch_size=2)
    assert losses.shape == (2,) and np.isfinite(losses).all() and losses[0] != losses[1]
