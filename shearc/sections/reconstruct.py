"""`prune.reconstruct:` refit the layers that read pruned channels after selection, before any training.

    prune: {method: taylor, reconstruct: {method: least-squares}}
    prune: {method: activation, reconstruct: {method: least-squares, calibration_samples: 64, damping: 0.01}}

Accepted by every prune method; on by default after taylor, magnitude and activation (whose selection leaves the
kept weights as they were), off (null) after hard-concrete. What it does: runtime/reconstruction.py; a second method
registers its section here and its implementation in runtime/stages/prune.py (RECONSTRUCTION_IMPLEMENTATIONS).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field

from .base import Section
from .registry import RECONSTRUCTIONS

if TYPE_CHECKING:
    from shearc.compiler.estimates import Costing, StageCost

DEFAULT_SEQ_LEN = 2048  # SparseGPT's calibration windows


@RECONSTRUCTIONS.register("least-squares")
class LeastSquaresReconstruction(Section):
    """SlimGPT (Ling et al., NeurIPS 2024) and ZipLM (Kurtic et al., NeurIPS 2023): layer by layer, the kept columns
    of each attention output projection (pruned heads) and each MLP down projection (pruned intermediate channels)
    are refit by damped least squares over the Gram matrix of the projection's inputs on calibration windows, so
    that the projection computes what it computed with every channel; the windows pass through the layers already
    refit. Units removed along `hidden` or `layer` are not compensated (docs/DIFFERENCES.md says why)."""

    method: Literal["least-squares"]
    calibration_samples: int = Field(128, gt=0, description="Random windows of the training data to refit on "
                                     "(SparseGPT's calibration set: 128 windows of 2,048 tokens).")
    calibration_seq_len: int | None = Field(None, gt=0, description="Tokens per calibration window. Unset: "
                                            f"{DEFAULT_SEQ_LEN:,} (SparseGPT's), or the model's context if shorter, "
                                            "resolved at compile time.")
    damping: float = Field(0.01, ge=0, description="Added to the Gram matrix's diagonal, as a fraction of its mean "
                           "diagonal (SparseGPT's percdamp): keeps the solve stable where channels are correlated.")

    def resolved(self, context: int | None) -> LeastSquaresReconstruction:
        """This section with its window length settled for a model that reads `context` tokens (None: unknown)."""
        if self.calibration_seq_len is not None:
            return self
        return self.model_copy(update={"calibration_seq_len": min(DEFAULT_SEQ_LEN, context or DEFAULT_SEQ_LEN)})

    @property
    def tokens(self) -> int:
        if self.calibration_seq_len is None:
            raise ValueError("calibration_seq_len is resolved at compile time; call resolved() first")
        return self.calibration_samples * self.calibration_seq_len

    def cost(self, costing: Costing) -> StageCost:
        """The windows' hidden states through each layer, one micro-batch's forward at a time (about three forwards
        in all: up to the output projection, the refit block, the block again), a Gram matrix per projection
        (2 x tokens x width^2) and its solve; memory: the states, one micro-batch's forward, the widest Gram matrix
        and its solve's right-hand side in float64."""
        return costing.reconstruction(self.calibration_seq_len, self.tokens)
