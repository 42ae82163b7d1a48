"""Checkpoint state is checked when it is written, so a resume never fails on what a save let through."""

from collections import OrderedDict

import numpy as np
import pytest
import torch

from shearc.runtime.train.checkpoint import Checkpoints, require_plain

PLAIN = {"optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(2, 2)}},
                       "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "params": [0], "fused": None}]},
         "masks": OrderedDict(head=torch.ones(4)), "mixer": {"history": [[1.0, 2.0]], "stage": {"name": "prune"}},
         "flags": [True, "text", 7]}


def test_plain_state_is_accepted_and_reads_back_with_weights_only(tmp_path):
    require_plain(PLAIN)
    checkpoints = Checkpoints(tmp_path / "checkpoints", "f" * 64, keep=2)
    saved = checkpoints.save(stage="prune", stage_index=0, step=1, complete=False, model=torch.nn.Linear(2, 2),
                             trainer=PLAIN)
    state = saved.trainer_state()  # weights_only=True
    assert state["mixer"] == PLAIN["mixer"] and state["optimizer"]["param_groups"] == PLAIN["optimizer"]["param_groups"]


@pytest.mark.parametrize(("bad", "where"), [
    ({"mixer": {"history": [[1.0, np.float64(2.0)]]}}, "trainer['mixer']['history'][0][1] is numpy.float64"),
    ({"tokens": np.zeros(3)}, "trainer['tokens'] is numpy.ndarray"),
    ({"step": np.int64(3)}, "trainer['step'] is numpy.int64"),
    ({"span": slice(1, 2)}, "trainer['span'] is builtins.slice"),
    ({np.int64(0): 1.0}, "trainer key np.int64(0) is numpy.int64"),
])
def test_anything_else_is_refused_before_a_byte_is_written(tmp_path, bad, where):
    checkpoints = Checkpoints(tmp_path / "checkpoints", "f" * 64, keep=2)
    with pytest.raises(TypeError, match="only tensors and plain Python values") as error:
        checkpoints.save(stage="prune", stage_index=0, step=1, complete=False, model=torch.nn.Linear(2, 2),
                         trainer=bad)
    assert where in str(error.value)
    assert not (tmp_path / "checkpoints").exists() or not list((tmp_path / "checkpoints").iterdir())


def test_a_stage_that_changed_no_weights_points_at_the_newest_that_hold_them_and_keeps_it(tmp_path):
    checkpoints = Checkpoints(tmp_path, "abc", keep=1)
    model = torch.nn.Linear(3, 2)
    masks_only = checkpoints.save(stage="prune", stage_index=0, step=0, complete=True, model=None, trainer={})
    assert masks_only.weights is None  # the source's weights hold: nothing written
    assert not (masks_only.path / "model.safetensors").exists()
    dense = checkpoints.save(stage="finalize", stage_index=1, step=0, complete=True, model=model, trainer={})
    assert dense.weights == dense.path / "model.safetensors"
    report = checkpoints.save(stage="evaluate", stage_index=2, step=0, complete=True, model=None,
                              trainer={"report": {"loss": 1.0}})
    assert report.weights == dense.path / "model.safetensors"
    # keep=1: the prune checkpoint goes, the finalize one stays while the newest points at it
    assert [c.path.name for c in checkpoints.all()] == ["01-finalize-00000000", "02-evaluate-00000000"]
    restored = torch.nn.Linear(3, 2)
    checkpoints.latest().load_model(restored)
    assert torch.equal(restored.weight, model.weight)
    checkpoints.save(stage="export", stage_index=3, step=0, complete=True, model=model, trainer={})
    assert [c.path.name for c in checkpoints.all()] == ["03-export-00000000"]  # no longer pointed at


def test_a_stage_ending_in_the_dense_shards_links_them_and_a_later_one_points_at_them(tmp_path):
    """From finalize on the dense model's shards (RUN_DIR/dense) are hard-linked into the checkpoint, not written
    again; a later checkpoint that changed no weights points at them; a shard gone makes the checkpoint damaged."""
    import os

    from shearc.runtime.dense_shards import ShardedWeights, write_shards
    from shearc.runtime.train.checkpoint import damaged

    weights = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}
    write_shards(iter(weights.items()), tmp_path / "dense", shard_bytes=16)
    checkpoints = Checkpoints(tmp_path / "checkpoints", "f" * 64, keep=1)
    finalized = checkpoints.save(stage="finalize", stage_index=1, step=0, complete=True, model=None,
                                 trainer=PLAIN, dense=tmp_path / "dense")
    assert finalized.weights == finalized.path / "dense" and damaged(finalized) is None
    for path in (tmp_path / "dense").iterdir():
        assert os.path.samefile(path, finalized.weights / path.name)
    later = checkpoints.save(stage="evaluate", stage_index=2, step=0, complete=True, model=None, trainer=PLAIN)
    assert later.weights == finalized.weights and finalized.path.is_dir()  # kept: pointed at
    assert all(torch.equal(ShardedWeights(later.weights)[k], v) for k, v in weights.items())
    next(later.weights.glob("model-00002-*")).unlink()
    assert "are gone" in damaged(later)
