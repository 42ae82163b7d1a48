"""The comparison's two baselines, trained with shearc's own loop, data, mixer and evaluation.

random-init: the target shape from transformers' initialisation. torch-pruning: torch-pruning's
Taylor pruner (bench/torch_pruning_baseline.py) on a multi-head copy of the source. Both then train
on the recover stage's schedule of a compiled plan, so they see the same tokens as shearc's runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import AutoModelForCausalLM, AutoTokenizer

from shearc.compiler.source import hf_config
from shearc.runtime.data import MixtureSampler, load_domains
from shearc.runtime.metrics import MetricsLog
from shearc.runtime.mixers import build_mixer
from shearc.runtime.stages.evaluate import compare
from shearc.runtime.stages.recover import LanguageModelling
from shearc.runtime.train.loop import Schedule, adamw, train


def mha_copy(source: Path, out: Path) -> None:
    """The same function as a multi-head model: each key/value head repeated for its query heads."""
    model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    config = model.config
    group = config.num_attention_heads // config.num_key_value_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    for layer in model.model.layers:
        for name in ("k_proj", "v_proj"):
            old = getattr(layer.self_attn, name)
            weight = old.weight.view(config.num_key_value_heads, head_dim, -1).repeat_interleave(group, dim=0)
            new = torch.nn.Linear(config.hidden_size, config.num_attention_heads * head_dim, bias=old.bias is not None)
            new.weight.data.copy_(weight.reshape(-1, config.hidden_size))
            setattr(layer.self_attn, name, new)
    config.num_key_value_heads = config.num_attention_heads
    ids = torch.arange(64).unsqueeze(0)
    original = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    for submodule in (model, original):
        submodule.eval()
    with torch.no_grad():
        gap = (model(input_ids=ids).logits - original(input_ids=ids).logits).abs().max().item()
    assert gap < 1e-4, f"the multi-head copy computes something else (max logit gap {gap})"
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(source).save_pretrained(out)


def compiled_plan(spec: dict, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    (work / "spec.yaml").write_text(yaml.safe_dump({**spec, "name": work.name}, sort_keys=False))
    shearc = str(Path(sys.executable).parent / "shearc")
    subprocess.run([shearc, "compile", str(work / "spec.yaml"), "-o", str(work / "plan.json")], check=True,
                   stdout=subprocess.DEVNULL)
    return json.loads((work / "plan.json").read_text())


def starting_model(kind: str, plan: dict, work: Path) -> torch.nn.Module:
    if kind == "random":
        torch.manual_seed(plan["runtime"]["seed"])
        return AutoModelForCausalLM.from_config(hf_config(plan["target"]["config"]))
    from torch_pruning_baseline import prune_with_torch_pruning

    shape = plan["target"]["model_info"]["shape"]
    tokenizer = AutoTokenizer.from_pretrained(plan_source(plan, work))
    domains = load_domains(plan["data"], base_dir=work, tokenizer=tokenizer, seq_len=128, seed=0,
                           cache_dir=work / "cache")
    rows = np.concatenate([d.train[:6] for d in domains])  # 36 windows of 128 tokens, every domain
    prune_with_torch_pruning(plan_source(plan, work), work / "pruned", hidden=shape["hidden"], heads=shape["heads"],
                             intermediate=shape["intermediate"], calibration=torch.as_tensor(rows.astype(np.int64)))
    return AutoModelForCausalLM.from_pretrained(work / "pruned", dtype=torch.float32)


def plan_source(plan: dict, work: Path) -> Path:
    return (work / plan["source"]["model"]).resolve()


def train_at_shape(spec: dict, kind: str, work: Path) -> dict:
    """`kind` (random or torch-pruning) at the spec's target shape, trained on its recover schedule."""
    plan = compiled_plan({**spec, "mixer": {"method": "constant"}}, work)
    recover = next(s for s in plan["stages"] if s["stage"] == "recover")["params"]
    evaluate = next(s for s in plan["stages"] if s["stage"] == "evaluate")["params"]
    tokenizer = AutoTokenizer.from_pretrained(plan_source(plan, work))
    device = torch.device("cpu")
    started = time.perf_counter()
    model = starting_model(kind, plan, work).train()
    domains = load_domains(plan["data"], base_dir=work, tokenizer=tokenizer, seq_len=recover["seq_len"],
                           seed=plan["runtime"]["seed"], cache_dir=work / "cache")
    train(stage="recover", model=model, optimizer=adamw(list(model.parameters()), plan, device, lr=recover["lr"]),
          schedule=Schedule.from_plan(recover, plan), sampler=MixtureSampler(domains, seed=plan["runtime"]["seed"] + 1),
          mixer=build_mixer(plan), eval_domains=domains, task=LanguageModelling(),
          metrics=MetricsLog(work / "metrics.jsonl"), device=device)
    seconds = time.perf_counter() - started
    eval_domains = load_domains(plan["data"], base_dir=work, tokenizer=tokenizer, seq_len=evaluate["seq_len"],
                                seed=plan["runtime"]["seed"], cache_dir=work / "cache")
    source = AutoModelForCausalLM.from_pretrained(plan_source(plan, work), dtype=torch.float32)
    report = compare(source, model, eval_domains, evaluate, vocab=source.config.vocab_size,
                     seed=plan["runtime"]["seed"], batch_size=plan["schedule"]["micro_batch"], device=device)
    (work / "report.json").write_text(json.dumps(report, indent=1))  # `work` reads back as a run directory
    return {"report": report, "seconds": seconds, "run_dir": str(work),
            "train_tokens": recover["steps"] * recover["global_batch"] * recover["seq_len"]}
