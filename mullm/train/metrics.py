"""Run logging: metrics.jsonl (always), TensorBoard (when installed), W&B (optional)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


class MetricsLogger:
    """Append one JSON object per event to ``metrics.jsonl`` and mirror scalars elsewhere."""

    def __init__(self, run_dir: str | Path, tensorboard: bool = True, wandb_project: str | None
                 = None, config: dict | None = None, enabled: bool = True) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        self.tb = None
        self.wandb = None
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(Path(run_dir) / "tensorboard"))
            except ImportError:  # tensorboard is an optional extra
                self.tb = None
        if wandb_project:
            import wandb  # an explicit request: fail loudly if it is not installed

            self.wandb = wandb.init(project=wandb_project, config=config, dir=str(run_dir))

    def truncate_after(self, step: int) -> None:
        """Drop records past ``step`` (a resumed run rewrites what the killed run logged)."""
        if not self.enabled or not self.path.is_file():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= step]
        self.path.write_text("".join(line + "\n" for line in keep))

    def log(self, record: dict[str, Any]) -> None:
        """Write one record (needs ``step``); numbers also go to TensorBoard / W&B."""
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        step = int(record["step"])
        kind = record.get("kind", "train")
        scalars = {f"{kind}/{k}": float(v) for k, v in record.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "step"
                   and math.isfinite(float(v))}
        if self.tb is not None:
            for k, v in scalars.items():
                self.tb.add_scalar(k, v, step)
        if self.wandb is not None:
            self.wandb.log(scalars, step=step)

    def text(self, tag: str, text: str, step: int) -> None:
        """Log generated samples as text."""
        if self.tb is not None:
            self.tb.add_text(tag, text, step)

    def close(self) -> None:
        """Flush and close the writers."""
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def read_metrics(path: str | Path, kind: str | None = "train") -> list[dict[str, Any]]:
    """Records of a metrics.jsonl, optionally only one kind ("train", "eval")."""
    out = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            if kind is None or rec.get("kind", "train") == kind:
                out.append(rec)
    return out
