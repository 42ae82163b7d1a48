"""Next-token cross-entropy a chunk of tokens at a time: never a whole vocabulary's fp32 logits for every token.

    with next_token_loss(model, input_ids) as loss:   # the output head computes the loss as the model runs
        model(input_ids=input_ids)
    loss.mean      # mean over every predicted token, differentiable
    loss.tokens    # each prediction's loss [rows, tokens - 1], detached
    sequence_losses(model, input_ids)   # the same as a SequenceLoss: .mean, and .rows per sequence

The output head's input (the final hidden states) is taken by a hook inside the model's own
forward, so data parallel and FSDP2 wrappers, LoRA and the mask hooks see an ordinary forward;
the head itself is handed zero positions. Logits are made a chunk of tokens at a time (about
CHUNK_ELEMENTS fp32 values), soft-capped where the config says (Gemma 2). When the loss is
differentiated, its gradient is computed in the same pass (the softmax of a chunk is at hand), so the
head's matrix products run three times, as in plain autograd, and nothing vocabulary-wide outlives
its chunk: at a 262,144-token vocabulary, 8 x 2048 tokens make 17 GB of fp32 logits in plain
autograd (and as much again for their gradient), and 64 tokens' worth (67 MB) here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

CHUNK_ELEMENTS = 2**24  # fp32 logits alive at once: 64 MiB


def chunk_tokens(vocab: int) -> int:
    return max(1, CHUNK_ELEMENTS // vocab)


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def output_head(model: torch.nn.Module) -> torch.nn.Module:
    return _unwrapped(model).get_output_embeddings()


def logit_softcap(model: torch.nn.Module) -> float | None:
    return getattr(_unwrapped(model).config, "final_logit_softcapping", None)


def chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                 softcap: float | None) -> torch.Tensor:
    """One chunk's logits in fp32, as the model's head computes them."""
    logits = F.linear(hidden, weight, bias).float()
    return logits if softcap is None else softcap * torch.tanh(logits / softcap)


def _product_dtype(device: torch.device, weight_dtype: torch.dtype) -> torch.dtype:
    """The dtype the head's matrix products run in: autocast's where it is on, else the weight's."""
    if torch.is_autocast_enabled(device.type):
        return torch.get_autocast_dtype(device.type)
    return weight_dtype


class _MeanCrossEntropy(torch.autograd.Function):
    """Mean cross-entropy of `hidden @ weight.T (+ bias)` against `targets`, and the per-token losses
    (not differentiable). The gradient is made in the forward pass, a chunk at a time, and scaled in backward."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                targets: torch.Tensor, softcap: float | None, grads: bool) -> tuple[torch.Tensor, torch.Tensor]:
        # needs_input_grad says what requires grad even under no_grad: `grads` says whether autograd records
        want_hidden, want_weight = grads and ctx.needs_input_grad[0], grads and ctx.needs_input_grad[1]
        want_bias = grads and bias is not None and ctx.needs_input_grad[2]
        count = len(targets)
        losses = torch.empty(count, dtype=torch.float32, device=hidden.device)
        step = chunk_tokens(weight.shape[0])
        grad_hidden = torch.empty_like(hidden) if want_hidden else None
        grad_weight = None  # fp32, from the first chunk's product on
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if want_bias else None
        products = _product_dtype(hidden.device, weight.dtype)
        for start in range(0, count, step):
            part, wanted = hidden[start:start + step], targets[start:start + step]
            capped = chunk_logits(part, weight, bias, softcap)
            log_probs = torch.log_softmax(capped, dim=-1)  # one fused pass over the chunk's logits
            losses[start:start + len(part)] = -log_probs.gather(1, wanted[:, None])[:, 0]
            if not (want_hidden or want_weight or want_bias):
                continue
            grad = log_probs.exp_()  # the softmax, in place of the log-probabilities
            grad[torch.arange(len(part), device=grad.device), wanted] -= 1
            if softcap is not None:  # d capped / d logits = 1 - tanh^2
                grad *= 1 - (capped / softcap) ** 2
            del capped, log_probs
            grad = grad.to(products)  # cast once for both products (autocast would cast it for each)
            if want_hidden:  # sums over the chunk's tokens: backward divides by their count
                grad_hidden[start:start + len(part)] = (grad @ weight).to(hidden.dtype)
            if want_weight:  # bf16 products are added into the fp32 sum as they are (no cast pass over the head)
                product = grad.T @ part.to(products)
                grad_weight = product.float() if grad_weight is None else grad_weight.add_(product)
            if want_bias:
                grad_bias += grad.float().sum(0)
        ctx.mark_non_differentiable(losses)
        ctx.grads, ctx.count = (grad_hidden, grad_weight, grad_bias), count
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return losses.mean(), losses

    @staticmethod
    def backward(ctx: Any, grad_mean: torch.Tensor, _grad_losses: torch.Tensor) -> tuple:
        grad_hidden, grad_weight, grad_bias = ctx.grads
        ctx.grads = None
        scale = grad_mean.float() / ctx.count
        out_hidden = grad_hidden.mul_(scale.to(grad_hidden.dtype)) if grad_hidden is not None else None
        out_weight = grad_weight.mul_(scale).to(ctx.dtypes[0]) if grad_weight is not None else None
        out_bias = (grad_bias * scale).to(ctx.dtypes[1]) if grad_bias is not None else None
        return out_hidden, out_weight, out_bias, None, None, None


@dataclass(frozen=True)
class SequenceLoss:
    mean: torch.Tensor  # over every predicted token of the batch: what training differentiates
    rows: torch.Tensor  # each sequence's mean [rows], detached: the mixer's signal, per-domain sums


@dataclass
class NextTokenLoss:
    """What the head's hook computed: filled during the model's forward."""

    targets: torch.Tensor  # [rows, tokens - 1]
    mean: torch.Tensor | None = None
    tokens: torch.Tensor | None = None  # [rows, tokens - 1], each prediction's loss, detached
    calls: int = field(default=0, repr=False)


@contextmanager
def next_token_loss(model: torch.nn.Module, input_ids: torch.Tensor) -> Iterator[NextTokenLoss]:
    """Within the block, the model's forward on `input_ids` computes its next-token loss in chunks (above)
    and returns empty logits."""
    head, softcap = output_head(model), logit_softcap(model)
    result = NextTokenLoss(targets=input_ids[:, 1:])

    def hook(module: torch.nn.Module, args: tuple) -> tuple:
        hidden = args[0]
        if hidden.shape[:2] != input_ids.shape:  # e.g. a generation step inside the block: leave it alone
            return args
        flat = hidden[:, :-1].reshape(-1, hidden.shape[-1])
        mean, tokens = _MeanCrossEntropy.apply(flat, module.weight, module.bias, result.targets.reshape(-1), softcap,
                                               torch.is_grad_enabled())
        result.mean, result.tokens = mean, tokens.view(result.targets.shape)
        result.calls += 1
        return (hidden[:, :0], *args[1:])

    handle = head.register_forward_pre_hook(hook)
    try:
        yield result
    finally:
        handle.remove()
    if result.calls != 1:
        raise RuntimeError(f"the output head ran {result.calls} times on the batch, expected once")


def sequence_losses(model: torch.nn.Module, input_ids: torch.Tensor) -> SequenceLoss:
    """The model's next-token loss on `input_ids` ([rows, tokens]), as transformers computes it (in fp32)."""
    with next_token_loss(model, input_ids) as loss:
        model(input_ids=input_ids, use_cache=False)  # no KV cache to fill: nothing generates
    return SequenceLoss(mean=loss.mean, rows=loss.tokens.mean(1))
