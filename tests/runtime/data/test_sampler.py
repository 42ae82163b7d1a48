import numpy as np
import pytest

from shearc.runtime.data.domains import DomainData
from shearc.runtime.data.sampler import MixtureSampler


def _domains(sizes, seq_len=4):
    """Domain d's sequence i is filled with the value 1000 * d + i, so rows say where they came from."""
    return [DomainData(name=f"d{d}", train=np.array([[1000 * d + i] * seq_len for i in range(n)]),
                       eval=np.arange(10)) for d, n in enumerate(sizes)]


def _draw(sampler, weights, batch, steps):
    return [sampler.next_batch(np.asarray(weights), batch) for _ in range(steps)]


def test_same_seed_same_batches_and_proportions_follow_weights():
    first = _draw(MixtureSampler(_domains([500, 500, 500]), seed=3), [0.7, 0.2, 0.1], 32, 50)
    again = _draw(MixtureSampler(_domains([500, 500, 500]), seed=3), [0.7, 0.2, 0.1], 32, 50)
    assert all(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(first, again, strict=True))
    counts = np.bincount(np.concatenate([b.domains for b in first]), minlength=3) / (32 * 50)
    np.testing.assert_allclose(counts, [0.7, 0.2, 0.1], atol=0.03)
    other = _draw(MixtureSampler(_domains([500, 500, 500]), seed=4), [0.7, 0.2, 0.1], 32, 1)
    assert not np.array_equal(other[0].input_ids, first[0].input_ids)


def test_ranks_read_disjoint_rows_of_the_same_global_batch():
    single = _draw(MixtureSampler(_domains([50, 50]), seed=0), [0.5, 0.5], 8, 10)
    ranks = [_draw(MixtureSampler(_domains([50, 50]), seed=0, rank=r, world_size=2), [0.5, 0.5], 8, 10)
             for r in range(2)]
    for step in range(10):
        rows0, rows1 = ranks[0][step].input_ids, ranks[1][step].input_ids
        assert rows0.shape == rows1.shape == (4, 4)
        assert not set(rows0[:, 0]) & set(rows1[:, 0])
        assert sorted([*rows0[:, 0], *rows1[:, 0]]) == sorted(single[step].input_ids[:, 0])


def test_state_dict_resumes_exactly():
    sampler = MixtureSampler(_domains([7, 9]), seed=1)
    _draw(sampler, [0.5, 0.5], 4, 6)  # past an epoch boundary
    state = sampler.state_dict()
    expected = _draw(sampler, [0.3, 0.7], 4, 5)
    resumed = MixtureSampler(_domains([7, 9]), seed=1)
    resumed.load_state_dict(state)
    got = _draw(resumed, [0.3, 0.7], 4, 5)
    assert all(np.array_equal(a.input_ids, b.input_ids) for a, b in zip(expected, got, strict=True))
    assert resumed.tokens.tolist() == sampler.tokens.tolist()


def test_tokens_per_domain_are_counted():
    sampler = MixtureSampler(_domains([100, 100]), seed=0, rank=1, world_size=2)
    batches = _draw(sampler, [1.0, 0.0], 6, 3)
    assert sampler.tokens.tolist() == [6 * 3 * 4, 0]  # global, not just this rank's rows
    assert all((b.domains == 0).all() for b in batches)


def test_batch_must_split_over_ranks():
    with pytest.raises(ValueError, match="does not split"):
        MixtureSampler(_domains([10]), seed=0, rank=0, world_size=3).next_batch(np.array([1.0]), 4)
