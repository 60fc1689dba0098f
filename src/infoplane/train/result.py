"""What a finished training run returns (:class:`TrainResult`, also ``out_dir/summary.json``) and how its
JSONL log is read back (:func:`read_log`)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["TrainResult", "read_log"]


@dataclass
class TrainResult:
    """Summary of a finished run (also written to ``out_dir/summary.json``)."""

    out_dir: Path
    log_path: Path
    steps: int
    tokens: int
    final_val_ce: float | None
    final_val_mbe: dict[int, float]
    final_val_mbe_mean: float | None
    switches: list[dict[str, Any]]
    checkpoints: list[Path]
    skipped_steps: int
    wall_time: float
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir), "log_path": str(self.log_path), "steps": self.steps,
            "tokens": self.tokens, "final_val_ce": self.final_val_ce,
            "final_val_mbe": {str(k): v for k, v in self.final_val_mbe.items()},
            "final_val_mbe_mean": self.final_val_mbe_mean, "n_switches": len(self.switches),
            "switches": self.switches, "checkpoints": [str(p) for p in self.checkpoints],
            "skipped_steps": self.skipped_steps, "wall_time": self.wall_time, **self.extra,
        }


def read_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Records of a training JSONL log."""
    with open(path, encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]

