"""Gradients of the language-model loss over calibration windows, for Taylor importance.

    prune: {method: taylor, estimator: element-first}   # the mean gradient
    prune: {method: taylor, estimator: element-mix}     # and the Fisher diagonal
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import torch

from ..loss import sequence_losses


def accumulate_gradients(model: torch.nn.Module, samples: Iterable[torch.Tensor], *, second_order: bool,
                         batch_size: int = 1) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor] | None]:
    """Mean gradient of the LM loss over samples (each sample's mean over its tokens), in fp32, and the
    Fisher diagonal mean_j (dL_j/dW)^2 for second-order estimators.

    First order: equal-length samples go through `batch_size` at a time and backward sums their
    gradients into .grad, which becomes the result (fp32 models: no second copy of the gradients;
    other dtypes sum into an fp32 accumulator). The Fisher term needs each sample's own gradient:
    then one backward per sample.
    """
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    in_grad = not second_order and all(p.dtype == torch.float32 for p in params.values())  # .grad is the sum
    sums = {} if in_grad else {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()}
    fisher = {name: torch.zeros_like(p, dtype=torch.float32) for name, p in params.items()} if second_order else None
    model.zero_grad(set_to_none=True)
    count = 0
    for batch in in_batches(samples, 1 if second_order else batch_size):
        (sequence_losses(model, batch).mean * len(batch)).backward()  # the sum of each sample's mean
        count += len(batch)
        if in_grad:
            continue
        for name, param in params.items():
            if param.grad is None:
                continue
            sums[name] += param.grad.float()
            if fisher is not None:
                fisher[name] += param.grad.float() ** 2
        model.zero_grad(set_to_none=True)
    if count == 0:
        raise ValueError("no calibration samples")
    if in_grad:
        sums = {name: p.grad if p.grad is not None else torch.zeros_like(p) for name, p in params.items()}
        model.zero_grad(set_to_none=True)
    for name in sums:
        sums[name] /= count
        if fisher is not None:
            fisher[name] /= count
    return sums, fisher


def in_batches(samples: Iterable[torch.Tensor], size: int) -> Iterator[torch.Tensor]:
    batch: list[torch.Tensor] = []
    for sample in samples:
        batch.append(sample.reshape(-1))
        if len(batch) == size:
            yield torch.stack(batch)
            batch = []
    if batch:
        yield torch.stack(batch)
