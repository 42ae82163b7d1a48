"""Baseline for the benchmarks: prune a Hugging Face Llama (or Gemma 3's MLP) with the outside library torch-pruning.

    .venv/bin/python bench/torch_pruning_baseline.py --model DIR --out DIR --hidden 192 --heads 4 \
        --intermediate 384 [--tokens calib.npy | --samples 8 --seq-len 64 --seed 0] [--threads 1]

Takes a `LlamaForCausalLM` (multi-head attention if its heads are pruned), or a Gemma 3 text model (its MLP width
only), to a smaller dense shape with torch-pruning (tested with torch-pruning 1.6.1, `pip install
torch-pruning==1.6.1`; it is not a dependency of shearc): first-order Taylor importance (|w * dL/dw|, gradients of
the LM loss on a calibration batch), `MetaPruner` with local (per-layer, uniform) ranking, whole attention heads
removed (head_dim kept, so RoPE is untouched), the hidden size pruned through the embedding, every projection, every
RMSNorm and the lm_head's input, and the MLP width pruned per layer. The lm_head's output (the vocabulary) is never
pruned. The result is written as an ordinary HF directory (safetensors, config.json with the new widths and the old
head_dim), reloaded with `AutoModelForCausalLM.from_pretrained` and checked for identical logits.

torch-pruning takes ratios, not target sizes: it keeps int(n * (1 - ratio)) channels and removes
ceil(ratio * heads) heads, so the ratios here aim half a unit inside the target to land on it despite float
rounding; the result is checked against the target, never assumed.

What torch-pruning (1.6.1) cannot do here, so this helper refuses rather than fakes it:
- Head pruning under GQA (num_key_value_heads < num_attention_heads; a GQA model whose heads are kept, with only the
  MLP width or the hidden size pruned, is accepted). It never removes KV heads: it drops query heads only, the same
  number inside each KV group, so a head target rounds down to a multiple of the KV head count; and a target equal to
  the KV head count is silently skipped (once query heads would equal KV heads its GQA test no longer holds, the
  KV projections get the query indices, and its over-pruning check drops the whole attention group).
Not attempted, by choice rather than for want of torch-pruning: per-layer widths and depth pruning (every layer
gets the same target).

Hidden-size pruning does work: the residual stream is one group spanning the embedding, every projection's input or
output, every RMSNorm weight (passed as bare parameters, a module type torch-pruning does not know) and the lm_head's
input. Tied embeddings work too (both copies lose the same columns; they are re-tied after pruning).
Independently of torch-pruning, transformers' LlamaConfig will not save a hidden size that is not a multiple of the
head count (even with head_dim set), so such targets are refused up front.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import AutoModelForCausalLM

CALIBRATION_BATCH = 4  # sequences per forward/backward while accumulating Taylor gradients
LOGITS_TOLERANCE = 1e-4


def load_source(model_dir: Path) -> nn.Module:
    # Float32 so that the reload check compares like with like.
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = model.config
    if config.model_type not in ("llama", "gemma3_text"):
        raise ValueError(f"expected a Llama or Gemma 3 model, got model_type={config.model_type!r}")
    return model


def current_shape(model: nn.Module) -> dict:
    config = model.config
    return {"hidden": config.hidden_size, "heads": config.num_attention_heads, "kv_heads": config.num_key_value_heads,
            "intermediate": config.intermediate_size, "head_dim": head_dim_of(config),
            "layers": config.num_hidden_layers, "vocab": config.vocab_size, "model_type": config.model_type}


def head_dim_of(config) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def ratio_keeping(keep: int, total: int) -> float:
    """Pruning ratio under which torch-pruning keeps exactly `keep` of `total` channels: it keeps
    int(total * (1 - ratio)), so aim half a channel above `keep` to be safe from float rounding."""
    return 0.0 if keep == total else 1.0 - (keep + 0.5) / total


def head_ratio_keeping(keep: int, total: int) -> float:
    """Head pruning ratio under which torch-pruning keeps `keep` heads: it removes ceil(ratio * total)."""
    return 0.0 if keep == total else (total - keep - 0.5) / total


def check_target(source: dict, hidden: int, heads: int, intermediate: int) -> None:
    for name, want in (("hidden", hidden), ("heads", heads), ("intermediate", intermediate)):
        if not 0 < want <= source[name]:
            raise ValueError(f"target {name}={want} must be in 1..{source[name]}")
    # Not torch-pruning's limit but transformers': LlamaConfig refuses to save one whose hidden size is not a multiple
    # of the head count, even with head_dim given explicitly.
    if source["model_type"] != "llama" and (hidden, heads) != (source["hidden"], source["heads"]):
        raise ValueError("a Gemma 3 model's MLP width only: its extra norms (around each sublayer, and on queries and "
                         "keys) are not declared to torch-pruning here")
    if heads != source["heads"] and source["kv_heads"] != source["heads"]:
        raise ValueError("head pruning under GQA is not supported: torch-pruning never removes KV heads (see the "
                         "module docstring)")
    if hidden % heads:
        raise ValueError(f"hidden={hidden} must be a multiple of heads={heads} for LlamaConfig to accept it")


def accumulate_taylor_gradients(model: nn.Module, calibration: torch.LongTensor) -> float:
    """LM loss gradients on the calibration set, averaged over its batches; returns the mean loss."""
    model.zero_grad(set_to_none=True)
    batches = calibration.split(CALIBRATION_BATCH)
    total = 0.0
    for batch in batches:
        loss = model(input_ids=batch, labels=batch, use_cache=False).loss
        (loss / len(batches)).backward()
        total += loss.item()
    return total / len(batches)


def build_pruner(model: nn.Module, example: torch.LongTensor, source: dict, hidden: int, heads: int,
                 intermediate: int):
    import torch_pruning as tp  # benchmark-only dependency

    layers = model.model.layers
    head_ratio = head_ratio_keeping(heads, source["heads"])
    # Heads are named only where they are pruned (multi-head attention, check_target says): a GQA model's kept
    # attention is left out of torch-pruning's head logic altogether.
    qkv_heads = {proj: source["heads"] for layer in layers if head_ratio > 0
                 for proj in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj)}
    # The default ratio reaches the one group without an entry below: the hidden size, shared by every layer.
    # The MLP group of a layer is found through gate_proj's output; the attention group through q_proj's, whose
    # width ratio only has to be non-zero for torch-pruning to look at its heads (head dims are never pruned).
    ratios = {layer.mlp.gate_proj: ratio_keeping(intermediate, source["intermediate"]) for layer in layers}
    ratios.update({layer.self_attn.q_proj: head_ratio for layer in layers if head_ratio > 0})
    # RMSNorm is not a module torch-pruning knows: name its weight as a bare parameter pruned along its only dim.
    norms = [(m.weight, 0) for m in model.modules() if type(m).__name__.endswith("RMSNorm")]
    return tp.pruner.MetaPruner(
        model,
        example_inputs=example,
        importance=tp.importance.TaylorImportance(),
        global_pruning=False,
        pruning_ratio=ratio_keeping(hidden, source["hidden"]),
        pruning_ratio_dict=ratios,
        ignored_layers=[model.lm_head],
        num_heads=qkv_heads,
        prune_num_heads=True,
        prune_head_dims=False,
        head_pruning_ratio=head_ratio,
        unwrapped_parameters=norms,
    )


def update_config(model: nn.Module, head_dim: int) -> None:
    """Write the pruned widths into the config; head_dim is pinned because hidden / heads no longer gives it."""
    config, first = model.config, model.model.layers[0]
    config.hidden_size = model.model.embed_tokens.embedding_dim
    config.num_attention_heads = first.self_attn.q_proj.out_features // head_dim
    config.num_key_value_heads = first.self_attn.k_proj.out_features // head_dim
    config.intermediate_size = first.mlp.gate_proj.out_features
    config.head_dim = head_dim


def retie_embeddings(model: nn.Module) -> None:
    """torch-pruning replaces the shared weight by two pruned copies; make them one parameter again."""
    if getattr(model.config, "tie_word_embeddings", False):
        embedding = model.model.embed_tokens.weight
        if not torch.equal(model.lm_head.weight, embedding):
            raise AssertionError("tied embeddings were pruned differently")
        model.lm_head.weight = embedding


def check_shapes(model: nn.Module) -> None:
    """Every weight must have the shape the config now declares, or the saved directory would not reload."""
    c = model.config
    h, q, kv, i = c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, \
        c.intermediate_size
    expected = {"model.embed_tokens.weight": (c.vocab_size, h), "lm_head.weight": (c.vocab_size, h),
                "model.norm.weight": (h,)}
    for n in range(c.num_hidden_layers):
        p = f"model.layers.{n}."
        expected.update({p + "self_attn.q_proj.weight": (q, h), p + "self_attn.k_proj.weight": (kv, h),
                         p + "self_attn.v_proj.weight": (kv, h), p + "self_attn.o_proj.weight": (h, q),
                         p + "mlp.gate_proj.weight": (i, h), p + "mlp.up_proj.weight": (i, h),
                         p + "mlp.down_proj.weight": (h, i), p + "input_layernorm.weight": (h,),
                         p + "post_attention_layernorm.weight": (h,)})
    actual = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    wrong = {name: (actual.get(name), shape) for name, shape in expected.items() if actual.get(name) != shape}
    if wrong:
        raise AssertionError(f"pruned shapes disagree with the config (actual, expected): {wrong}")


@torch.no_grad()
def reload_max_diff(model: nn.Module, out_dir: Path, calibration: torch.LongTensor) -> float:
    reloaded = AutoModelForCausalLM.from_pretrained(out_dir, dtype=torch.float32)
    model.eval()
    reloaded.eval()
    diff = 0.0
    for batch in calibration.split(CALIBRATION_BATCH):
        a = model(input_ids=batch, use_cache=False).logits
        b = reloaded(input_ids=batch, use_cache=False).logits
        diff = max(diff, (a - b).abs().max().item())
    return diff


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


class Stopwatch:
    """Seconds spent in each named phase, in order."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.seconds[phase] = now - self._last
        self._last = now


def prune_with_torch_pruning(model_dir: Path, out_dir: Path, *, hidden: int, heads: int, intermediate: int,
                             calibration: torch.LongTensor) -> dict:
    """Prune the Llama in `model_dir` to (hidden, heads, intermediate) in every layer with torch-pruning's
    Taylor importance on `calibration` ([n, seq_len] token ids) and save it to `out_dir` as an HF directory."""
    clock = Stopwatch()
    model = load_source(Path(model_dir))
    source = current_shape(model)
    check_target(source, hidden, heads, intermediate)
    calibration = calibration.long()
    params_before = count_parameters(model)
    # No KV cache while torch-pruning traces, whose cache objects it cannot follow; restored before saving.
    use_cache, model.config.use_cache = model.config.use_cache, False
    clock.lap("load")

    pruner = build_pruner(model, calibration[:1], source, hidden, heads, intermediate)
    clock.lap("trace")
    loss = accumulate_taylor_gradients(model, calibration)
    clock.lap("gradients")
    pruner.step()
    del pruner
    model.zero_grad(set_to_none=True)
    clock.lap("prune")

    retie_embeddings(model)
    update_config(model, source["head_dim"])
    model.config.use_cache = use_cache
    check_shapes(model)
    reached = current_shape(model)
    kv_heads = source["kv_heads"] if heads == source["heads"] else heads
    target = {"hidden": hidden, "heads": heads, "kv_heads": kv_heads, "intermediate": intermediate}
    missed = {k: (reached[k], v) for k, v in target.items() if reached[k] != v}
    if missed:
        raise AssertionError(f"torch-pruning missed the target (reached, wanted): {missed}")
    model.save_pretrained(out_dir, safe_serialization=True)
    clock.lap("save")

    diff = reload_max_diff(model, Path(out_dir), calibration)
    if diff >= LOGITS_TOLERANCE:
        raise AssertionError(f"reloaded model differs from the pruned one: max |logits diff| = {diff}")
    clock.lap("reload_check")
    return {"tool": "torch-pruning", "importance": "taylor", "source": source, "pruned": reached,
            "pruned_dims": sorted(k for k in target if reached[k] != source[k]),
            "params_before": params_before, "params_after": count_parameters(model),
            "calibration_shape": list(calibration.shape), "calibration_loss": loss,
            "reload_max_abs_logits_diff": diff, "seconds": clock.seconds,
            "total_seconds": sum(clock.seconds.values()), "out_dir": str(out_dir)}


def random_calibration(vocab: int, samples: int, seq_len: int, seed: int) -> torch.LongTensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab, (samples, seq_len), generator=generator)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="source HF Llama directory (MHA if heads are pruned)")
    parser.add_argument("--out", type=Path, required=True, help="where to save the pruned HF directory")
    parser.add_argument("--hidden", type=int, required=True)
    parser.add_argument("--heads", type=int, required=True)
    parser.add_argument("--intermediate", type=int, required=True)
    parser.add_argument("--tokens", type=Path, help="[n, seq_len] int .npy of calibration token ids; without it, "
                        "uniformly random ids (from --samples/--seq-len/--seed) stand in")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--seq-len", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, help="torch CPU threads; 1 avoids oversubscription on a busy machine")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)

    if args.tokens is not None:
        calibration = torch.from_numpy(np.load(args.tokens).astype(np.int64))
    else:
        vocab = json.loads((args.model / "config.json").read_text())["vocab_size"]
        calibration = random_calibration(vocab, args.samples, args.seq_len, args.seed)
    result = prune_with_torch_pruning(args.model, args.out, hidden=args.hidden, heads=args.heads,
                                      intermediate=args.intermediate, calibration=calibration)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
