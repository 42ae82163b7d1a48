"""metrics.jsonl: one JSON object per line, appended and flushed as it happens (rank 0 only).

When TensorBoard is installed, training and mixer records are also written as scalars under
RUN_DIR/tensorboard (`tensorboard --logdir RUN_DIR/tensorboard`).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _tensorboard(directory: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # optional: TensorBoard is not a dependency
        return None
    return SummaryWriter(log_dir=str(directory))


class MetricsLog:
    def __init__(self, path: Path | None) -> None:
        """`path=None` writes nothing (ranks other than 0)."""
        self.path = path
        self.tensorboard = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.tensorboard = _tensorboard(path.parent / "tensorboard")

    def write(self, event: str, **fields: Any) -> None:
        if self.path is None:
            return
        record = {"event": event, "time": round(time.time(), 3), **_plain(fields)}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, allow_nan=True) + "\n")
        if self.tensorboard is not None:
            self._scalars(record)

    def _scalars(self, record: dict[str, Any]) -> None:
        stage, step = record.get("stage"), record.get("step")
        if step is None or stage is None:
            return
        if record["event"] == "train":
            for name in ("loss", "lr_scale", "grad_norm", "tokens_per_second"):
                self.tensorboard.add_scalar(f"{stage}/{name}", record[name], step)
        elif record["event"] == "mixer":
            for index, domain in enumerate(record["domains"]):
                self.tensorboard.add_scalar(f"{stage}/weight/{domain}", record["weights"][index], step)
                self.tensorboard.add_scalar(f"{stage}/eval_loss/{domain}", record["losses"][index], step)
            self.tensorboard.flush()

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()

    def read(self, event: str | None = None) -> list[dict[str, Any]]:
        if self.path is None or not self.path.is_file():
            return []
        records = [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line]
        return [r for r in records if event is None or r["event"] == event]
