"""What a run met, as lines for its console, the model card and `shearc report`: training steps whose update was not
applied (runtime/train/loop.py, `bad_step`: a non-finite loss or gradient norm, or a loss above the divergence
bound), and where hard-concrete pruning left the masks' expected size against the target (`mask_size`, written by
runtime/stages/mask_learning.py)."""

from __future__ import annotations

from typing import Any


def bad_step_lines(metrics: list[dict[str, Any]]) -> list[str]:
    lines = []
    for record in metrics:
        stopped = record.get("stopped", record.get("policy") != "skip")  # absent from runs before `stop` dropped any
        done = "the run stopped" if stopped else "update skipped"
        where = f"{record.get('stage')} step {record.get('step')}"
        if record["event"] == "nonfinite":
            lines.append(f"{where}: loss {record['loss']}, gradient norm {record['grad_norm']} (not finite); {done}")
        elif record["event"] == "diverged":
            uniform = record.get("uniform_loss", 0.0)  # absent from runs before the bound knew the vocabulary
            lines.append(f"{where}: loss {record['loss']:.3f} above the divergence bound {record['bound']:.3f} (the "
                         f"stage's first loss {record['first_loss']:.3f} + {record['rise']:g} nats"
                         + (f", and a uniform guess's {uniform:.3f}" if uniform else "") + f"); {done}")
    return lines


MASK_SIZE_TOLERANCE = 0.05  # of the target's parameters: closer than this, the masks reached the target


def mask_size_line(record: dict[str, Any]) -> str:
    """Where pruning left the masks' expected size, and what finalize did about the difference."""
    expected, target = record["expected_params"], record["target_params"]
    off = expected / target - 1
    where = (f"{abs(off):.1%} {'above' if off > 0 else 'below'} it" if abs(off) >= MASK_SIZE_TOLERANCE
             else f"within {MASK_SIZE_TOLERANCE:.0%} of it")
    kinds = ", ".join(f"{kind} {fraction:.3f} of its units against {record['target_fraction'][kind]:.3f}"
                      for kind, fraction in record["expected_fraction"].items())
    moved = []
    if record["dropped_alive"]:
        moved.append(f"dropped {record['dropped_alive']:,} units the masks still kept (keep probability above 0.5)")
    if record["kept_dead"]:
        moved.append(f"kept {record['kept_dead']:,} units the masks had given up (below 0.5), at their soft values")
    done = " and ".join(moved) if moved else "changed no unit's fate"
    return (f"the masks' expected size ended at {expected / 1e6:,.2f}M parameters against the target's "
            f"{target / 1e6:,.2f}M, {where} ({kinds}); finalize keeps exactly the target's units by the masks' "
            f"ranking, and so {done}")


def mask_size_lines(metrics: list[dict[str, Any]]) -> list[str]:
    return [mask_size_line(record) for record in metrics if record["event"] == "mask_size"]
