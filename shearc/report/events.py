"""Training steps whose update was not applied (runtime/train/loop.py, `bad_step`), as lines for the model card
and `shearc report`: a non-finite loss or gradient norm, or a loss above the divergence bound."""

from __future__ import annotations

from typing import Any


def bad_step_lines(metrics: list[dict[str, Any]]) -> list[str]:
    lines = []
    for record in metrics:
        done = "update skipped" if record.get("policy") == "skip" else "the run stopped"
        where = f"{record.get('stage')} step {record.get('step')}"
        if record["event"] == "nonfinite":
            lines.append(f"{where}: loss {record['loss']}, gradient norm {record['grad_norm']} (not finite); {done}")
        elif record["event"] == "diverged":
            lines.append(f"{where}: loss {record['loss']:.3f} above the divergence bound {record['bound']:.3f} (the "
                         f"stage's first loss {record['first_loss']:.3f} + {record['rise']:g} nats); {done}")
    return lines
