"""What a prune method hands its stage: the masks, and what they replaced."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Selection:
    masks: dict[str, torch.Tensor]  # the hooks' layout, exactly the target's units
    # Per unit, the value the masks replaced, in the same layout: reconstruction refits towards the model as it was
    # before selection. None: 1 for every unit (scoring leaves the source's units whole); hard-concrete: the soft
    # value every unit had, the pruned ones included.
    before: dict[str, torch.Tensor] | None = None
    step: int = 0  # the stage's last step (its complete checkpoint's)
