"""One-shot pruning with and without layer-wise reconstruction, no training, on the real tier's checkpoints.

    .venv/bin/python bench/bench_reconstruction.py --model smollm2 --out /tmp/recon-smollm2.json
    .venv/bin/python bench/bench_reconstruction.py --model gemma3 --out /tmp/recon-gemma3.json

For each importance method (taylor, magnitude, activation), each size (about 80% and 60% of the parameters;
of the non-embedding ones for Gemma 3 270M, whose embedding is 63% of it) and each calibration seed (three for
taylor, `--seeds`; one for the others, `--other-seeds`), in one process with the source loaded once:
1. shearc's prune stage selects (its own code: `scored_masks` on a plan compiled for that seed);
2. the masked model (what finalize slices, exactly) is measured: per-domain loss on the tier's eval windows,
   and the tier's cloze task through lm-eval;
3. shearc's reconstruction refits it (`--samples` windows of `--seq-len` tokens drawn with the same seed) and it
   is measured again; the weights are then put back for the next cell.
The source is measured once. Printed and written (--out): every cell, and per method and size the mean loss
rise over the source with and without reconstruction and their ratio, medians over seeds.

`--torch-pruning` adds the outside baseline at the sizes that keep every head (SmolLM2's `--sizes "80% MLP"`, Gemma
3's 80%; torch-pruning cannot prune GQA heads, bench/torch_pruning_baseline.py says why): for each taylor seed,
torch-pruning's Taylor (`pip install torch-pruning==1.6.1`) on the very calibration windows shearc's taylor scored,
its dense result measured the same way.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

SIZES = {  # query heads keep whole KV groups in SmolLM2 (9 heads over 3); Gemma 3 has one KV head of 4 queries, and
    # transformers wants its hidden size (640) divisible by the head count, so its heads go 4 -> 2 or stay
    "smollm2": {"80%": {"heads": 6, "kv_heads": 2, "intermediate": 1152},
                "60%": {"heads": 6, "kv_heads": 2, "intermediate": 640},
                # heads kept, so that torch-pruning (which cannot prune GQA heads) can reach it: 108.0M, 80.3%
                "80% MLP": {"intermediate": 1024}},
    "gemma3": {"80%": {"intermediate": 1472}, "60%": {"heads": 2, "intermediate": 1280}},
}
METHODS = {
    "taylor": {"method": "taylor", "granularities": ["head", "intermediate"], "calibration_samples": 16,
               "calibration_seq_len": 128},
    "magnitude": {"method": "magnitude", "granularities": ["head", "intermediate"]},
    "activation": {"method": "activation", "granularities": ["head", "intermediate"], "calibration_samples": 16,
                   "calibration_seq_len": 128},
}
EVAL = {"sequences_per_domain": 8, "seq_len": 128}


def compiled(work: Path, model_dir: Path, text: dict, method: str, target: dict, seed: int, cloze: str) -> Path:
    from shearc.cli import main
    from tests.helpers import write_spec
    from tests.real.test_real_model import real_spec

    spec = real_spec(model_dir, text, METHODS[method], {"method": "none"},
                     {"tasks": [{"path": cloze, "metric": "acc"}]}, target=target, evaluation=EVAL)
    spec["runtime"]["seed"] = seed
    folder = work / f"{method}-{seed}-{'-'.join(map(str, target.values()))}"
    folder.mkdir(parents=True, exist_ok=True)
    for item in work.iterdir():  # the cloze task and the text, relative to the plan
        if item.name in ("tasks", "text") and not (folder / item.name).exists():
            (folder / item.name).symlink_to(item)
    plan = folder / "plan.json"
    assert main(["compile", str(write_spec(folder, spec)), "-o", str(plan)]) == 0
    return plan


class Cell:
    """A RunContext for one plan, over the source model loaded once."""

    def __init__(self, plan_path: Path, model: torch.nn.Module) -> None:
        from shearc.runtime.metrics import MetricsLog
        from shearc.runtime.run import checked_tokenizer
        from shearc.runtime.stages.base import RunContext
        from shearc.runtime.verify import verify

        verified = verify(plan_path)
        self.plan_path = plan_path
        self.context = RunContext(verified=verified, run_dir=plan_path.parent / "run", device=torch.device("cpu"),
                                  metrics=MetricsLog(None), model=model, tokenizer=checked_tokenizer(verified))
        self.evaluate = next(s for s in verified.plan.stages if s.stage == "evaluate")

    def measure(self, masks: dict[str, torch.Tensor]) -> dict:
        """Per-domain mean loss on the eval windows and cloze accuracy, of the model under `masks`."""
        from shearc.runtime.downstream import run_tasks
        from shearc.runtime.loss import sequence_losses
        from shearc.runtime.masks.hooks import MaskHooks

        context, params = self.context, self.evaluate.params
        hooks = MaskHooks(context.model, context.verified.source.adapter)
        hooks.values = masks
        try:
            losses = {}
            with torch.no_grad():
                context.model.eval()
                for domain in context.load_domains(params.seq_len):
                    windows = domain.eval_windows(params.seq_len, params.sequences_per_domain)
                    ids = torch.as_tensor(np.stack(windows).astype(np.int64))
                    losses[domain.name] = float(sequence_losses(context.model, ids).rows.mean())
            (cloze,) = run_tasks({"model": context.model}, context.tokenizer, self.evaluate.downstream,
                                 context.verified.plan_dir, limit=None, batch_size=8, device=context.device,
                                 seed=context.seed, bos=context.plan.data.window_bos is not None)["model"]
        finally:
            hooks.remove()
        return {"losses": losses, "mean": statistics.fmean(losses.values()), "cloze": cloze["value"]}


def torch_pruning_cell(cell: Cell, model_dir: Path, target: dict, seed: int) -> dict:
    """torch-pruning's Taylor to `target` on the windows shearc's taylor scores for this plan, measured as a cell."""
    from transformers import AutoModelForCausalLM

    from bench.torch_pruning_baseline import prune_with_torch_pruning
    from shearc.runtime.stages.prune import calibration_windows

    source = cell.context.verified.source.shape
    width = {name: target.get(name, getattr(source, name)) for name in ("hidden", "heads", "intermediate")}
    taylor = METHODS["taylor"]
    calibration = torch.stack(calibration_windows(cell.context, taylor["calibration_samples"],
                                                  taylor["calibration_seq_len"]))
    out = cell.context.run_dir / "torch-pruning"
    started = time.perf_counter()
    summary = prune_with_torch_pruning(model_dir, out, calibration=calibration, **width)
    seconds = time.perf_counter() - started
    pruned = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    measured = Cell(cell.plan_path, pruned).measure({})
    return {"method": "torch-pruning taylor", "seed": seed, "target": target, "selected": measured,
            "params": summary["params_after"], "select_seconds": round(seconds, 1)}


def run(model_name: str, sizes: list[str], seeds: list[int], other_seeds: list[int], methods: list[str], samples: int,
        seq_len: int, damping: float, torch_pruning: bool = False) -> dict:
    from transformers import AutoModelForCausalLM

    from shearc.runtime.reconstruction import reconstruct
    from shearc.runtime.stages.prune import calibration_windows, scored_masks
    from tests.real.assets import GEMMA3, SMOLLM2, real_model, write_cloze_task, write_text_domains

    model_dir = real_model(GEMMA3 if model_name == "gemma3" else SMOLLM2)
    work = Path(tempfile.mkdtemp(prefix="bench-recon-"))
    text = write_text_domains(work / "text")
    cloze = write_cloze_task(work)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    source_plan = compiled(work, model_dir, text, "magnitude", SIZES[model_name]["80%"], 0, cloze)
    source = Cell(source_plan, model).measure({})
    print(f"source: {json.dumps(source)}", flush=True)
    cells, baselines = [], []
    for size in sizes:
        target = SIZES[model_name][size]
        for method in methods:
            for seed in seeds if method == "taylor" else other_seeds:
                cell = Cell(compiled(work, model_dir, text, method, target, seed, cloze), model)
                started = time.perf_counter()
                selection = scored_masks(cell.context, cell.context.plan.stages[0])
                select_s = time.perf_counter() - started
                selected = cell.measure(selection.masks)
                windows = calibration_windows(cell.context, samples, seq_len)
                source_shape = cell.context.verified.source.shape
                started = time.perf_counter()
                refits = reconstruct(model, cell.context.verified.source.adapter, source_shape, selection.masks,
                                     windows, damping=damping, batch_size=cell.context.plan.schedule.micro_batch)
                refit_s = time.perf_counter() - started
                refit = cell.measure(selection.masks)
                model.load_state_dict(original)
                row = {"size": size, "method": method, "seed": seed, "target": target, "selected": selected,
                       "reconstructed": refit, "select_seconds": round(select_s, 1),
                       "reconstruct_seconds": round(refit_s, 1),
                       "layer_error_ratio": sum(r.error_after for r in refits) / sum(r.error_before for r in refits)}
                cells.append(row)
                print(json.dumps(row), flush=True)
                if torch_pruning and method == "taylor" and set(target) == {"intermediate"}:
                    baselines.append({"size": size, **torch_pruning_cell(cell, model_dir, target, seed)})
                    print(json.dumps(baselines[-1]), flush=True)
    return {"model": model_name, "samples": samples, "seq_len": seq_len, "damping": damping, "source": source,
            "cells": cells, "summary": summarise(source, cells), "torch_pruning": baselines}


def summarise(source: dict, cells: list[dict]) -> list[dict]:
    """Per size and method: medians over seeds of the mean loss rise, selected and reconstructed, and their ratio."""
    rows = []
    for size in dict.fromkeys(c["size"] for c in cells):
        for method in dict.fromkeys(c["method"] for c in cells):
            group = [c for c in cells if c["size"] == size and c["method"] == method]
            if not group:
                continue
            rise = [c["selected"]["mean"] - source["mean"] for c in group]
            refit = [c["reconstructed"]["mean"] - source["mean"] for c in group]
            rows.append({"size": size, "method": method, "seeds": len(group),
                         "rise_selected": statistics.median(rise), "rise_reconstructed": statistics.median(refit),
                         "ratio": statistics.median(b / a for a, b in zip(rise, refit, strict=True)),
                         "ratio_max": max(b / a for a, b in zip(rise, refit, strict=True)),
                         "cloze_selected": statistics.median(c["selected"]["cloze"] for c in group),
                         "cloze_reconstructed": statistics.median(c["reconstructed"]["cloze"] for c in group),
                         "reconstruct_seconds": statistics.median(c["reconstruct_seconds"] for c in group)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=sorted(SIZES), default="smollm2")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES["smollm2"]), default=["80%", "60%"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--other-seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--methods", nargs="+", choices=sorted(METHODS), default=list(METHODS))
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--damping", type=float, default=0.01)
    parser.add_argument("--torch-pruning", action="store_true", help="add torch-pruning's taylor where it can prune")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    unknown = [size for size in args.sizes if size not in SIZES[args.model]]
    if unknown:
        parser.error(f"--sizes {unknown} not defined for {args.model}: choose from {list(SIZES[args.model])}")
    result = run(args.model, args.sizes, args.seeds, args.other_seeds, args.methods, args.samples, args.seq_len,
                 args.damping, args.torch_pruning)
    source = result["source"]
    print(f"\n{args.model}: source mean loss {source['mean']:.3f}, cloze {source['cloze']:.3f}")
    print("size  method      seeds  rise selected  rise reconstructed  ratio (max)    cloze sel -> rec   refit s")
    for row in result["summary"]:
        print(f"{row['size']:5} {row['method']:11} {row['seeds']:5}  {row['rise_selected']:13.3f}  "
              f"{row['rise_reconstructed']:18.3f}  {row['ratio']:.2f} ({row['ratio_max']:.2f})   "
              f"{row['cloze_selected']:.3f} -> {row['cloze_reconstructed']:.3f}   {row['reconstruct_seconds']:6.1f}")
    for row in result["torch_pruning"]:
        print(f"{row['size']:5} torch-pruning taylor, seed {row['seed']}: rise "
              f"{row['selected']['mean'] - source['mean']:.3f}, cloze {row['selected']['cloze']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
