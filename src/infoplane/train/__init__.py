"""GAPT training: compact GPT, MBE regulariser, phase controller, gradient alignment, trainer, checkpoints,
and GAPT / native-model adapters for Hugging Face causal LMs.

Submodules are imported lazily (``infoplane.train.trainer`` etc.) so that ``import infoplane.train`` stays
cheap; the names below resolve on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "GPT": "model", "GPTConfig": "model", "GPTOutput": "model",
    "TrainConfig": "config",
    "Trainer": "trainer", "TrainResult": "trainer", "train": "trainer", "read_log": "trainer",
    "NonFiniteLossError": "trainer",
    "save_checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "list_checkpoints": "checkpoint",
    "latest_checkpoint": "checkpoint",
    "NativeCausalLM": "model", "GaptLoss": "hf", "gapt_training_step": "hf", "GaptCallback": "hf",
    "PhaseController": "phases", "Phase": "phases", "PhaseControllerConfig": "phases",
    "GaptObjective": "objective", "ObjectiveConfig": "objective", "lr_at": "schedule",
    "mbe_penalty": "regularizer", "LayerSchedule": "regularizer",
    "gradient_alignment": "alignment", "detect_cycles": "alignment",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"infoplane.train.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'infoplane.train' has no attribute {name!r}")
