"""Resume from every checkpoint a run writes, for every mixer and every prune method.

An uninterrupted run is recorded: its run directory is copied as it stood right after each
checkpoint was written (every stage but export ends with one), and again late in each window
that a stage-complete checkpoint opens (just before the next stage's first checkpoint, or before
`done.json` for the last one). Each copy is then run again, as a user would after a crash there, and
must end with the uninterrupted run's weights, bit for bit (reconstruction's refit weights included).
The mixers update at every step and DRPruning fits its scaling laws, so every checkpoint carries a
mixer history.
"""

import shutil

import pytest
from safetensors.torch import load_file

from shearc.cli import main
from shearc.runtime.train.checkpoint import Checkpoints

from ...helpers import tiny_project

ALL = ["layer", "head", "intermediate", "hidden"]
STEPS = {"steps": 6, "global_batch": 4, "seq_len": 16, "warmup_steps": 2, "eval_interval": 1, "lr": 1e-3}
PRUNE = {
    "hard-concrete": {"method": "hard-concrete", **STEPS},
    "taylor": {"method": "taylor", "calibration_samples": 4, "calibration_seq_len": 16,
               "granularities": ALL},
    "magnitude": {"method": "magnitude", "granularities": ALL},
    "activation": {"method": "activation", "calibration_samples": 4, "calibration_seq_len": 16, "granularities": ALL},
}
_RECONSTRUCT = {"reconstruct": {"method": "least-squares", "calibration_samples": 4, "calibration_seq_len": 16}}
PRUNE["magnitude+reconstruct"] = {**PRUNE["magnitude"], **_RECONSTRUCT}
PRUNE["hard-concrete+reconstruct"] = {**PRUNE["hard-concrete"], **_RECONSTRUCT}
MIXER = {
    "constant": {"method": "constant"},
    "dynamic-batch-loading": {"method": "dynamic-batch-loading", "reference": "source"},
    "drpruning": {"method": "drpruning", "reference": "source", "fit_min_points": 3, "fit_min_progress": 0.0},
}


def _record_snapshots(monkeypatch, out, snapshots):
    """Copy `out` after every checkpoint, and before the first checkpoint that follows a complete one."""
    save = Checkpoints.save

    def saving(self, **kwargs):
        newest = self.all()[-1:] if self.directory.exists() else []
        if newest and newest[0].complete:  # late in the window a stage-complete checkpoint opened
            _snapshot(out, snapshots, f"before {kwargs['stage']} {kwargs['step']}")
        saved = save(self, **kwargs)
        _snapshot(out, snapshots, f"after {saved.path.name}")
        return saved

    monkeypatch.setattr(Checkpoints, "save", saving)


def _snapshot(out, snapshots, label):
    copy = out.parent / "snapshots" / f"{len(snapshots):02d}"
    shutil.copytree(out, copy)
    snapshots.append((label, copy))


RECOVERY = {
    "full": {"method": "full", **STEPS},
    "distill": {"method": "distill", "student": "lora", "rank": 4, "top_k": 16, "lm_weight": 0.1, **STEPS},
}
TARGETS = {"mistral-gqa": {"layers": 3, "hidden": 32, "heads": 4, "kv_heads": 1, "intermediate": 96},
           "gemma3": {"layers": 3, "hidden": 32, "heads": 2, "kv_heads": 1, "intermediate": 80}}
# Every method with every mixer; activation (scored like taylor) and distillation once each; and a model with
# tied embeddings (a checkpoint holds the tied tensor once, under the output head's name).
CASES = ([(m, x, "full", "mistral-gqa") for m in PRUNE for x in MIXER if m in ("hard-concrete", "taylor", "magnitude")]
         + [("activation", "drpruning", "distill", "mistral-gqa"), ("taylor", "constant", "full", "gemma3"),
            ("magnitude+reconstruct", "constant", "full", "gemma3"),
            ("hard-concrete+reconstruct", "dynamic-batch-loading", "full", "mistral-gqa")])


@pytest.mark.parametrize(("method", "mixer", "recovery", "model"), CASES)
def test_resuming_from_every_checkpoint_gives_the_uninterrupted_weights(tmp_path, monkeypatch, method, mixer,
                                                                         recovery, model):
    plan = tiny_project(tmp_path, model, {
        "target": TARGETS[model],
        "prune": PRUNE[method], "mixer": MIXER[mixer], "recovery": RECOVERY[recovery],
        "runtime": {"checkpoint_interval": 2, "keep_checkpoints": 2, "deterministic": True},
        "eval": {"enabled": True, "sequences_per_domain": 2}, "export": {"dtype": "float32"}})
    clean, snapshots = tmp_path / "clean", []
    with monkeypatch.context() as patch:
        _record_snapshots(patch, clean, snapshots)
        assert main(["run", str(plan), "--out", str(clean)]) == 0
    late = tmp_path / "snapshots" / "late"  # killed after export, before done.json
    shutil.copytree(clean, late)
    (late / "done.json").unlink()
    snapshots.append(("before done.json", late))
    labels = [label for label, _ in snapshots]
    for stage in ("prune", "finalize", "recover", "evaluate"):  # every stage boundary is a resume point
        assert any(label.startswith("after") and f"-{stage}-" in label for label in labels), labels
    for stage in ("finalize", "recover", "evaluate"):
        assert any(label.startswith(f"before {stage}") for label in labels), labels

    expected = load_file(clean / "model" / "model.safetensors")
    for label, snapshot in snapshots:
        assert main(["run", str(plan), "--out", str(snapshot)]) == 0, label
        assert '"event": "resume"' in (snapshot / "metrics.jsonl").read_text(), f"{label}: not resumed"
        resumed = load_file(snapshot / "model" / "model.safetensors")
        assert resumed.keys() == expected.keys(), label
        different = [name for name in expected if not resumed[name].equal(expected[name])]
        assert not different, f"resumed {label}: {different} differ from the uninterrupted run"
