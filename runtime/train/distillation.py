"""Logit distillation: the recovery objective of Minitron, a Task for the training loop.

    recovery: {method: distill, temperature: 1.0, top_k: null, lm_weight: 0.0}

Per sequence: the mean over its tokens of T^2 * KL(teacher || student) between the next-token
distributions softened by the temperature T (over the teacher's top k tokens when top_k is set,
both renormalised over them), plus lm_weight times the ordinary next-token cross-entropy, which
is measured and logged even at weight 0. The teacher is frozen and runs without gradients.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch
import torch.nn.functional as F

from ..loss import SequenceLoss
from .loop import PlainTask


def distillation_kl(student: torch.Tensor, teacher: torch.Tensor, *, temperature: float,
                    top_k: int | None) -> torch.Tensor:
    """[rows, tokens, vocab] logits -> each row's mean over tokens of T^2 KL(teacher || student), in fp32."""
    student, teacher = student.float() / temperature, teacher.float() / temperature
    if top_k is not None:
        teacher, indices = teacher.topk(top_k, dim=-1)
        student = student.gather(-1, indices)
    teacher_log = F.log_softmax(teacher, dim=-1)
    per_token = (teacher_log.exp() * (teacher_log - F.log_softmax(student, dim=-1))).sum(-1)
    return per_token.mean(-1) * temperature**2


class Distillation(PlainTask):
    """The training loop's Task for `recovery: {method: distill}`."""

    def __init__(self, teacher: torch.nn.Module, params: Any) -> None:
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.top_k, self.lm_weight = params.temperature, params.top_k, params.lm_weight
        self._sums: torch.Tensor | None = None  # KL, LM loss and rows since the last log, on the device

    def lm_loss(self, model: torch.nn.Module, input_ids: torch.Tensor, step: int, micro: int) -> SequenceLoss:
        with torch.no_grad():
            teacher = self.teacher(input_ids=input_ids, use_cache=False).logits[:, :-1]
        logits = model(input_ids=input_ids, use_cache=False).logits[:, :-1]
        kl = distillation_kl(logits, teacher, temperature=self.temperature, top_k=self.top_k)
        del teacher
        with nullcontext() if self.lm_weight else torch.no_grad():
            targets = input_ids[:, 1:]
            lm = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                 reduction="none").view(targets.shape).mean(1)
        sums = torch.stack([kl.detach().sum(), lm.detach().sum(), torch.tensor(float(len(kl)), device=kl.device)])
        self._sums = sums if self._sums is None else self._sums + sums
        rows = kl + self.lm_weight * lm if self.lm_weight else kl
        return SequenceLoss(mean=rows.mean(), rows=rows.detach())

    def log_terms(self, step: int) -> dict[str, Any]:
        """This step's mean KL and LM loss per sequence (this rank's sequences)."""
        if self._sums is None:
            return {}
        kl, lm, rows = self._sums.tolist()
        self._sums = None
        return {"kl": kl / rows, "lm_loss": lm / rows}
