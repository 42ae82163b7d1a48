"""The distillation objective: the KL of the papers, at a temperature, over the teacher's top k if asked."""

import pytest
import torch
import torch.nn.functional as F

from shearc.runtime.train.distillation import distillation_kl


def _logits(seed, shape=(2, 5, 11)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 3


def test_the_kl_is_torchs_per_token_kl_averaged_over_each_sequence():
    student, teacher = _logits(0), _logits(1)
    expected = F.kl_div(F.log_softmax(student, -1), F.log_softmax(teacher, -1), log_target=True,
                        reduction="none").sum(-1).mean(-1)
    torch.testing.assert_close(distillation_kl(student, teacher, temperature=1.0, top_k=None), expected)
    assert distillation_kl(teacher, teacher, temperature=1.0, top_k=None).abs().max() < 1e-6


def test_temperature_softens_both_and_scales_by_its_square():
    student, teacher = _logits(2), _logits(3)
    soft = F.kl_div(F.log_softmax(student / 2, -1), F.log_softmax(teacher / 2, -1), log_target=True,
                    reduction="none").sum(-1).mean(-1)
    torch.testing.assert_close(distillation_kl(student, teacher, temperature=2.0, top_k=None), 4 * soft)


def test_top_k_keeps_the_teachers_most_likely_tokens_renormalised():
    student, teacher = _logits(4), _logits(5)
    full = distillation_kl(student, teacher, temperature=1.0, top_k=None)
    torch.testing.assert_close(distillation_kl(student, teacher, temperature=1.0, top_k=11), full)
    top, indices = teacher.topk(3, dim=-1)
    expected = F.kl_div(F.log_softmax(student.gather(-1, indices), -1), F.log_softmax(top, -1), log_target=True,
                        reduction="none").sum(-1).mean(-1)
    torch.testing.assert_close(distillation_kl(student, teacher, temperature=1.0, top_k=3), expected)
    assert not torch.allclose(expected, full)


@pytest.mark.parametrize("top_k", [None, 4])
def test_gradients_reach_the_student_only_through_its_logits(top_k):
    student = _logits(6).requires_grad_(True)
    distillation_kl(student, _logits(7), temperature=1.5, top_k=top_k).sum().backward()
    assert student.grad is not None and torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0
