"""Training steps at the machine's speed: shearc's recover and hard-concrete steps under each precision, compile and
optimizer setting, against a bare eager fp32 PyTorch loop doing the same arithmetic, side by side in turns.

    .venv/bin/python bench/bench_throughput.py --model smollm2 --turns 3
    .venv/bin/python bench/bench_throughput.py --model embedded --turns 3

The model is the real-model tier's SmolLM2-135M (tests/real/assets.py) on its three real text domains, or the
embedded default's own model (specs/tiny_drpruning.yaml) on its generated corpus. Every step is STEPS_PER_RUN
steps of one batch shape through shearc's own training loop (train(): the mixture sampler, the constant mixer,
the task's loss, clipping, AdamW, per-step metrics); the first step of each run (warm-up, compilation) is left out
and a run's figure is the median of its other steps' times, taken from the loop's own tokens/s log. The settings:
- recover (the LM task on the whole model): fp32 with torch's per-tensor AdamW (shearc before bf16 and fusion),
  fp32 fused, bf16 per-tensor, bf16 fused (the default on a CPU that multiplies bf16 natively), bf16 fused compiled;
- hard-concrete (the mask-learning task: masks sampled per micro-batch through forward hooks, the Lagrangian, three
  parameter groups): fp32 per-tensor, bf16 fused (the default), bf16 fused compiled;
- bare: forward through transformers' own loss, backward per micro-batch, clipping, torch's default AdamW, fp32
  eager, on the same batches: what a user's own loop would cost.
Each turn runs every setting once (the model reloaded from the same weights); printed per setting: seconds per
step, tokens/s, achieved GFLOP/s (step_flops) against the matrix-product
roof measured in the same run in that precision, and the median over turns of the step time over the bare step's.
"""

from __future__ import annotations

import argparse
import dataclasses
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

STEPS_PER_RUN = 4  # the first is left out
SHAPES = {"smollm2": (8, 4, 256), "embedded": (16, 8, 256)}  # global batch, micro-batch, sequence length
ROOF_SIZE = 2048  # square matrix products for the roof
CORPUS_DOCUMENTS = 2000  # per domain, enough rows for every batch


@dataclasses.dataclass(frozen=True)
class Setting:
    name: str
    task: str  # recover | hard-concrete | bare
    precision: str  # bf16 | fp32
    fused: bool
    compiled: bool = False


SETTINGS = [
    Setting("bare fp32 eager (transformers' loss, torch's default AdamW)", "bare", "fp32", False),
    Setting("recover fp32 eager, per-tensor AdamW", "recover", "fp32", False),
    Setting("recover fp32 eager, fused AdamW", "recover", "fp32", True),
    Setting("recover bf16 eager, per-tensor AdamW", "recover", "bf16", False),
    Setting("recover bf16 eager, fused AdamW (default)", "recover", "bf16", True),
    Setting("recover bf16 compiled, fused AdamW", "recover", "bf16", True, compiled=True),
    Setting("hard-concrete fp32 eager, per-tensor AdamW", "hard-concrete", "fp32", False),
    Setting("hard-concrete bf16 eager, fused AdamW (default)", "hard-concrete", "bf16", True),
    Setting("hard-concrete bf16 compiled, fused AdamW", "hard-concrete", "bf16", True, compiled=True),
]


def plan_for(model: str, work: Path):
    """A verified plan whose prune stage is hard-concrete and whose recover stage is full."""
    from shearc.compiler.compile import compile_spec, write_plan
    from shearc.runtime.verify import verify
    from tests.helpers import write_spec

    if model == "smollm2":
        from tests.real.assets import real_model, write_text_domains
        from tests.real.test_real_model import real_spec

        model_dir = real_model()
        spec = real_spec(model_dir, write_text_domains(work / "text"),
                         {"method": "hard-concrete", "steps": STEPS_PER_RUN, "lr": 2e-5,
                          "warmup_steps": 1, "eval_interval": STEPS_PER_RUN})
        spec_path = write_spec(work, spec)
    else:
        import shutil

        from shearc.corpus.writer import write_corpus

        shutil.copytree(REPO / "specs" / "tiny" / "model", work / "tiny" / "model")
        write_corpus(work / "tiny" / "data", train_documents=CORPUS_DOCUMENTS, eval_documents=100, seed=0)
        spec_path = work / "tiny_drpruning.yaml"
        shutil.copy(REPO / "specs" / "tiny_drpruning.yaml", spec_path)
    plan_path = work / "plan.json"
    write_plan(compile_spec(spec_path, plan_path), plan_path)
    return verify(plan_path)


def schedule(plan, stage: str, precision: str, shape: tuple[int, int, int]):
    from shearc.plan import PrecisionPlan
    from shearc.runtime.train.loop import Schedule

    global_batch, micro_batch, seq_len = shape
    base = Schedule.from_plan(plan.stage(stage), plan)
    return dataclasses.replace(base, steps=STEPS_PER_RUN, global_batch=global_batch, micro_batch=micro_batch,
                               seq_len=seq_len, warmup_steps=0, eval_interval=10**9, eval_sequences=1,
                               precision=PrecisionPlan(cpu=precision, cuda=precision, reason="bench"))


def shearc_steps(setting: Setting, model, verified, domains, work: Path, shape) -> list[float]:
    from shearc.runtime.data import MixtureSampler
    from shearc.runtime.masks.hooks import MaskHooks
    from shearc.runtime.masks.l0 import L0Masks
    from shearc.runtime.metrics import MetricsLog
    from shearc.runtime.mixers import build_mixer
    from shearc.runtime.stages.mask_learning import HardConcreteTask, mask_learning_groups
    from shearc.runtime.stages.recover import LanguageModelling
    from shearc.runtime.train.compiled import compiled
    from shearc.runtime.train.loop import adamw, train

    plan = verified.plan
    device = torch.device("cpu")
    stage = "prune" if setting.task == "hard-concrete" else "recover"
    stage_plan = plan.stage(stage)
    sched = schedule(plan, stage, setting.precision, shape)
    source = plan.source
    blocks = model.get_submodule(verified.source.adapter.layer_prefix)
    hooks = None
    if setting.task == "hard-concrete":
        from shearc.compiler.families import Shape

        params = stage_plan.params
        found = verified.source
        target = Shape(**plan.target.model_info.shape.model_dump())
        l0 = L0Masks(found.shape, target, [u.kind for u in plan.target.pruned_units], params,
                     torch.Generator().manual_seed(0))
        hooks = MaskHooks(model, found.adapter)
        task = HardConcreteTask(l0, hooks, params, source.model_info.params, found.parameter_count, seed=1)
        groups = mask_learning_groups(model, l0, params)
    else:
        task = LanguageModelling()
        groups = [{"params": list(model.parameters()), "lr": 2e-5}]
    metrics = MetricsLog(work / "metrics.jsonl")
    try:
        optimizer = adamw(groups, plan.schedule, device, fused=setting.fused)
        # as the stage does: eager again and dynamo's caches reset at the end (the compile time lands in the
        # first step's figure, which the medians leave out)
        with compiled(blocks, setting.compiled, lambda stats: None):
            train(stage=stage, model=model.train(), optimizer=optimizer, schedule=sched,
                  sampler=MixtureSampler(domains, seed=1), mixer=build_mixer(constant_mixer(plan)),
                  eval_domains=domains, task=task, metrics=metrics, device=device)
        tokens = shape[0] * shape[2]
        records = metrics.read("train")
        elapsed = [r["step"] * tokens / r["tokens_per_second"] for r in records]
        return list(np.diff([0.0, *elapsed]))
    finally:
        metrics.close()
        (work / "metrics.jsonl").unlink(missing_ok=True)
        if hooks is not None:
            hooks.remove()


def constant_mixer(plan):
    """The plan with the constant mixer: the step's arithmetic without a mixer's evals and references."""
    from shearc.sections.mixer import ConstantMixerSpec

    return plan.model_copy(update={"mixer": ConstantMixerSpec(method="constant")})


def bare_steps(model, batches: list[torch.Tensor], micro_batch: int, plan) -> list[float]:
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-5, betas=tuple(plan.schedule.betas),
                                  weight_decay=plan.schedule.weight_decay)
    model.train()
    times = []
    for ids in batches:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        for micro in ids.split(micro_batch):
            loss = model(input_ids=micro, labels=micro).loss
            (loss * len(micro) / len(ids)).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), plan.schedule.grad_clip)
        optimizer.step()
        times.append(time.perf_counter() - started)
    return times


def step_flops(model, shape: tuple[int, int, int]) -> float:
    """3 x the forward's: 2 per multiply-add of every linear layer's weight (the head included) per token, plus
    causal attention's scores and values at the bench's length (Kaplan et al., as compiler/estimates.py counts)."""
    global_batch, _, seq_len = shape
    config = model.config
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    attention = 2 * config.num_hidden_layers * seq_len * config.num_attention_heads * head_dim
    return 3 * (2 * linear + attention) * global_batch * seq_len


def matmul_roof(dtype: torch.dtype, repeats: int = 10) -> float:
    """GFLOP/s of a square matrix product in `dtype` (median of `repeats`)."""
    a, b = torch.randn(ROOF_SIZE, ROOF_SIZE, dtype=dtype), torch.randn(ROOF_SIZE, ROOF_SIZE, dtype=dtype)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - started)
    return 2 * ROOF_SIZE**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=list(SHAPES), default="smollm2")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="settings whose name contains any of these words (bare always)")
    parser.add_argument("--json", type=Path, help="write every step time here")
    args = parser.parse_args()
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from shearc.runtime.data import load_domains

    shape = SHAPES[args.model]
    settings = [s for s in SETTINGS if s.task == "bare" or not args.only or any(w in s.name for w in args.only)]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        verified = plan_for(args.model, work)
        plan, model_dir = verified.plan, verified.model_dir
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        domains = load_domains(plan.data, base_dir=verified.plan_dir, tokenizer=tokenizer, seq_len=shape[2], seed=0,
                               cache_dir=work / "cache")
        rows = np.concatenate([d.train for d in domains])
        generator = np.random.default_rng(0)
        batches = [torch.as_tensor(rows[generator.choice(len(rows), shape[0])].astype(np.int64))
                   for _ in range(STEPS_PER_RUN)]
        roofs = {"fp32": matmul_roof(torch.float32), "bf16": matmul_roof(torch.bfloat16)}
        results: dict[str, list[float]] = {s.name: [] for s in settings}
        every: dict[str, list[list[float]]] = {s.name: [] for s in settings}
        for turn in range(args.turns):
            for setting in settings:
                torch.manual_seed(0)
                model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
                if setting.task == "bare":
                    times = bare_steps(model, batches, shape[1], plan)
                else:
                    times = shearc_steps(setting, model, verified, domains, work, shape)
                every[setting.name].append(times)
                results[setting.name].append(statistics.median(times[1:]))
                print(f"turn {turn + 1}: {setting.name}: {statistics.median(times[1:]):.2f} s/step "
                      f"(steps {', '.join(f'{t:.2f}' for t in times)})", flush=True)
                del model
        flops_per_step = step_flops(AutoModelForCausalLM.from_pretrained(model_dir), shape)
        bare = results[SETTINGS[0].name]
        print(f"\n{args.model} on CPU ({torch.get_num_threads()} threads), steps of {shape[0]} x {shape[2]} tokens "
              f"in micro-batches of {shape[1]}; {args.turns} turns; matrix-product roof {roofs['fp32']:.0f} GFLOP/s "
              f"fp32, {roofs['bf16']:.0f} bf16 ({ROOF_SIZE}^3)")
        print("| setting | s/step | tokens/s | GFLOP/s | of its roof | step / bare step (median of turns) |")
        print("|---|---|---|---|---|---|")
        for setting in settings:
            seconds = statistics.median(results[setting.name])
            ratio = statistics.median(ours / base for ours, base in zip(results[setting.name], bare, strict=True))
            gflops = flops_per_step / seconds / 1e9
            print(f"| {setting.name} | {seconds:.2f} | {shape[0] * shape[2] / seconds:,.0f} | {gflops:.0f} | "
                  f"{gflops / roofs[setting.precision]:.0%} | {ratio:.3f} |")
        if args.json:
            args.json.write_text(json.dumps({"roofs": roofs, "steps": every}, indent=1))


if __name__ == "__main__":
    main()
