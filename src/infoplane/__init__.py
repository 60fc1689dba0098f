"""infoplane: information-theoretic analysis and training of language models.

The flat public API. Estimators (pure math) are imported eagerly; the probe, the information-plane
measures and the GAPT trainer resolve on first access so ``import infoplane`` stays light.

- estimators: :func:`soft_entropy`, :func:`soft_mutual_information`, :class:`SoftEntropyAccumulator`,
  :func:`calibrate_temperature`, :func:`reference_points`, :func:`matrix_entropy`,
  :func:`patch_matrix_entropy`, :class:`OnlineMatrixEntropy`, :class:`StreamingEstimator` (their common
  update / compute / merge / state_dict / sync contract)
- information plane: :func:`plane_table`, :func:`layer_means`
- probe: :class:`ProbeConfig`, :func:`analyze`, :class:`ProbeResult`, :func:`sweep`,
  :func:`analyze_distributed`, :func:`load_model`, :class:`InfoPlaneMonitor` (the probe
  every k steps of a native or ``transformers.Trainer`` run)
- downstream: :func:`correlate` (measures vs scores across models), :func:`preference_information`
- training: :class:`GPT`, :class:`GPTConfig`, :class:`TrainConfig`, :class:`Trainer`, :func:`train`,
  :class:`PhaseController`, :func:`mbe_penalty`, :func:`gradient_alignment`, :func:`detect_cycles`,
  :class:`GaptLoss`, :func:`load_checkpoint`
- data: :func:`load_corpus`, :func:`embedded_corpus`
- reproduction: :func:`reproduce` (experiments, then the report), :func:`run_experiments` (experiments only;
  add one with :func:`infoplane.experiments.register`)
- statistics (verdict engine): :func:`paired_effect`, :func:`bootstrap_ci`, :func:`sign_flip_test`,
  :func:`holm`, :class:`Precondition`, :class:`Claim`, :class:`ClaimResult`, :func:`label_permutations`,
  :func:`compare_to_null`; verdicts for a report: ``infoplane.stats.evaluate``
"""

from __future__ import annotations

import importlib
from typing import Any

from .estimators import (
    OnlineMatrixEntropy,
    SoftEntropyAccumulator,
    SoftEntropyResult,
    StreamingEstimator,
    calibrate_temperature,
    matrix_entropy,
    patch_matrix_entropy,
    reference_hash,
    reference_points,
    soft_assign,
    soft_entropy,
    soft_mutual_information,
)

__version__ = "0.1.0"

_LAZY = {
    "plane_table": "infoplane.plane", "layer_means": "infoplane.plane",
    "analyze": "infoplane.probe.analyze", "ProbeResult": "infoplane.probe.result",
    "ProbeConfig": "infoplane.probe.config", "analyze_distributed": "infoplane.probe.distributed",
    "sweep_distributed": "infoplane.probe.distributed",
    "ShardedRowsAccumulator": "infoplane.estimators.sharded",
    "CorruptCheckpointError": "infoplane.train.checkpoint", "LockHeldError": "infoplane.io",
    "write_shard": "infoplane.data.shards", "ShardSampler": "infoplane.data.shards",
    "open_shard_splits": "infoplane.data.lm_data",
    "sweep": "infoplane.probe.sweep", "load_model": "infoplane.probe.models",
    "InfoPlaneMonitor": "infoplane.probe.monitor",
    "correlate": "infoplane.downstream.correlate",
    "preference_information": "infoplane.downstream.preference",
    "GPT": "infoplane.train.model", "GPTConfig": "infoplane.train.model",
    "TrainConfig": "infoplane.train.config", "Trainer": "infoplane.train.trainer",
    "train": "infoplane.train.trainer", "load_checkpoint": "infoplane.train.checkpoint",
    "PhaseController": "infoplane.train.phases", "Phase": "infoplane.train.phases",
    "PhaseControllerConfig": "infoplane.train.phases", "GaptObjective": "infoplane.train.objective",
    "ObjectiveConfig": "infoplane.train.objective",
    "mbe_penalty": "infoplane.train.regularizer", "LayerSchedule": "infoplane.train.regularizer",
    "gradient_alignment": "infoplane.train.alignment", "detect_cycles": "infoplane.train.alignment",
    "GaptLoss": "infoplane.train.hf", "NativeCausalLM": "infoplane.train.model",
    "load_corpus": "infoplane.data.corpus", "embedded_corpus": "infoplane.data.corpus",
    "reproduce": "infoplane.cli.reproduce", "run_experiments": "infoplane.experiments.runner",
    "paired_effect": "infoplane.stats", "bootstrap_ci": "infoplane.stats",
    "sign_flip_test": "infoplane.stats", "holm": "infoplane.stats", "Precondition": "infoplane.stats",
    "Claim": "infoplane.stats", "ClaimResult": "infoplane.stats",
    "label_permutations": "infoplane.stats", "compare_to_null": "infoplane.stats",
}

__all__ = [
    "__version__",
    "OnlineMatrixEntropy", "SoftEntropyAccumulator", "SoftEntropyResult", "calibrate_temperature",
    "matrix_entropy", "patch_matrix_entropy", "reference_hash", "reference_points", "soft_assign",
    "soft_entropy", "soft_mutual_information", "StreamingEstimator",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'infoplane' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
