"""`shearc explain plan.json`: a readable summary of a plan."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from .data_cost import data_cost_lines
from .estimates import GIB
from .families import ADAPTERS

_DIMS = ("layers", "hidden", "heads", "kv_heads", "intermediate", "head_dim")


def _count(n: float) -> str:
    if abs(n) >= 1e15:
        return f"{n:.2e}"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:g}"


def explain(plan: dict[str, Any], console: Console, plan_dir: Path | None = None) -> None:
    """`plan_dir`: where the plan's relative paths start (its data files, for their token counts); the current
    directory when None."""
    source, target = plan["source"], plan["target"]
    console.print(Text(plan["spec"]["name"], style="bold")
                  + Text(f"  plan v{'.'.join(map(str, plan['plan_version']))}  sha256 {plan['plan_sha256'][:12]}  "
                         f"(shearc {plan['shearc_version']})"))
    if plan["spec"]["description"]:
        console.print(plan["spec"]["description"], markup=False)
    console.print(f"source: {source['model']} ({source['architecture']}, config from {source['config_origin']}: "
                  f"{source['config_path']})", markup=False)
    console.print(f"family adapter: {_adapter_name(source['architecture'])}", markup=False)

    shapes = Table(title="Shape", title_justify="left")
    shapes.add_column("")
    for name in _DIMS:
        shapes.add_column(name, justify="right")
    shapes.add_column("params", justify="right")
    shapes.add_column("non-emb", justify="right")
    shapes.add_column("fwd FLOPs/token", justify="right")
    for label, info in (("source", source["model_info"]), ("target", target["model_info"])):
        shapes.add_row(label, *(str(info["shape"][d]) for d in _DIMS), f"{info['params']:,}",
                       _count(info["non_embedding_params"]), _count(info["forward_flops_per_token"]))
    console.print(shapes)
    reduction = 1 - target["params_ratio"]
    console.print(f"parameters: {source['model_info']['params']:,} -> {target['model_info']['params']:,} "
                  f"({target['params_ratio']:.1%} kept, {reduction:.1%} removed)"
                  + (f"; from a budget of {target['budget']:,}" if target["budget"] else ""))

    groups = Table(title="Coupled groups (dependency graph)", title_justify="left")
    for column in ("unit", "granularity", "units", "params/unit", "tensors", "pruned"):
        groups.add_column(column, justify="right" if column in ("units", "params/unit", "tensors") else "left")
    pruned = {u["kind"]: u for u in target["pruned_units"]}
    for group in plan["groups"]:
        units = f"{group['count']}" + (f" x {group['scopes']} layers" if group["scope"] == "layer" else "")
        change = pruned.get(group["kind"])
        groups.add_row(group["kind"], group["granularity"], units, _count(group["params_per_unit"]),
                       str(len(group["tensors"])), f"{change['source']} -> {change['target']}" if change else "kept")
    console.print(groups)

    stages = Table(title="Stages", title_justify="left")
    for column in ("stage", "method", "tokens", "steps", "FLOPs", "peak memory/device", "fits", "host/process"):
        stages.add_column(column, justify="left" if column in ("stage", "method") else "right")
    for stage in plan["stages"]:
        estimate = stage["estimate"]
        method = stage.get("params", {}).get("method", "")
        memory = estimate["memory_bytes"]["total"] / GIB
        host = estimate.get("host_memory_bytes")  # absent from plans before 9.1
        stages.add_row(stage["stage"], method, _count(estimate["tokens"]), f"{estimate['steps']:,}",
                       _count(estimate["flops"]), f"{memory:.1f} GiB", "yes" if estimate["fits_device"] else "NO",
                       "-" if host is None else f"{host / GIB:.1f} GiB")
    console.print(stages)
    evaluate = next((s for s in plan["stages"] if s["stage"] == "evaluate"), None)
    unmeasured = [side for side in ("source", "result") if evaluate and side not in evaluate.get("latency_of", [side])]
    if unmeasured:
        console.print(f"evaluate: no latency measured for the {' or the '.join(unmeasured)}, which does not fit one "
                      f"device (runtime.device_memory_gib {plan['runtime']['device_memory_gib']:g})", markup=False)
    prune = plan["stages"][0]
    if prune.get("reconstruction"):
        line = reconstruction_line(prune["params"]["reconstruct"], prune["reconstruction"], source)
        console.print(line, markup=False)

    mixture = Table(title=f"Data mixture (mixer: {plan['mixer']['method']})", title_justify="left")
    for column in ("domain", "weight", "reference loss", "train files", "eval files", "tokens"):
        mixture.add_column(column, justify="left" if column == "domain" else "right")
    tokens, preparing = data_cost_lines(plan, plan_dir or Path.cwd())
    for domain, counted in zip(plan["data"]["domains"], tokens, strict=True):
        reference = domain["reference_loss"]
        held = (f"{counted.prepared + counted.estimated:,}" if not counted.estimated
                else f"~{_count(counted.prepared + counted.estimated)} (est.)")
        mixture.add_row(domain["name"], f"{domain['weight']:.3f}", "-" if reference is None else f"{reference:.4f}",
                        _found(domain["train_found"]), _found(domain["eval_found"]), held)
    console.print(mixture)
    console.print(preparing, markup=False)
    console.print(window_start_line(plan["data"]), markup=False)
    downstream = next((s.get("downstream") for s in plan["stages"] if s["stage"] == "evaluate"), None)
    if downstream:
        tasks = Table(title="Downstream tasks (lm-eval, on the source and the result)", title_justify="left")
        for column in ("task", "metric", "shots", "data"):
            tasks.add_column(column, justify="right" if column == "shots" else "left")
        for task in downstream:
            where = task["path"] or ", ".join(task["data"])
            tasks.add_row(task["task"], task["metric"], str(task["num_fewshot"]), where)
        console.print(tasks)
    runtime = plan["runtime"]
    line = (f"runtime: {runtime['devices']} x {runtime['device']} ({runtime['strategy']}, {runtime['precision']}), "
            f"micro-batch {plan['schedule']['micro_batch']}, seed {runtime['seed']}, output {runtime['output_dir']}")
    console.print(line, markup=False)
    console.print(precision_line(plan["precision"], runtime), markup=False)
    for warning in plan["warnings"]:
        console.print(Text("warning: ", style="yellow") + Text(warning))


def reconstruction_line(params: dict[str, Any], estimate: dict[str, Any], source: dict[str, Any]) -> str:
    """What reconstruction refits and what it costs: its share of the prune stage's estimate."""
    memory = estimate["memory_bytes"]
    return (f"reconstruct after selection: {params['method']} on {params['calibration_samples']} windows of "
            f"{params['calibration_seq_len']} tokens (damping {params['damping']:g}), layer by layer over "
            f"{source['model_info']['shape']['layers']} layers: {_count(estimate['flops'])} FLOPs, peak "
            f"{memory['total'] / GIB:.2f} GiB (calibration states and one forward "
            f"{memory['activations'] / GIB:.2f} GiB, the widest Gram matrix and its solve "
            f"{memory['masks'] / GIB:.3f} GiB)")


def precision_line(precision: dict[str, str], runtime: dict[str, Any]) -> str:
    """What the run computes in on the device it will find, and why."""
    computes = {"bf16": "bf16 autocast over fp32 master weights", "fp32": "fp32"}
    devices = {"cpu": ["cpu"], "cuda": ["cuda"], "auto": ["cuda", "cpu"]}[runtime["device"]]
    on = "; ".join(f"on {device}: {computes[precision[device]]}" for device in devices)
    compiled = ", training steps compiled with torch.compile" if runtime["compile"] else ""
    return f"computes {on}{compiled} ({precision['reason']})"


def window_start_line(data: dict[str, Any]) -> str:
    why = {"tokenizer": "as the tokenizer begins a text", "spec": "as the spec's data.window_bos says",
           "family": "as the family's usual tokenizer begins a text (no tokenizer found at compile time)"}
    begin = f"with BOS (token {data['window_bos']})" if data["window_bos"] is not None else "without BOS"
    return f"windows begin {begin}, {why[data['window_bos_origin']]}"


def _found(found: dict[str, int]) -> str:
    return f"{found['files']} ({found['bytes'] / 1e6:.1f} MB)" if found["files"] else "absent"


def _adapter_name(architecture: str) -> str:
    """The adapter class and its module, e.g. Qwen3Adapter (compiler/families/qwen3.py)."""
    if architecture not in ADAPTERS:
        return f"none in this shearc for {architecture}"
    adapter = type(ADAPTERS.get(architecture))
    return f"{adapter.__name__} (compiler/families/{adapter.__module__.rsplit('.', 1)[-1]}.py)"
