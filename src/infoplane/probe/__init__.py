"""Probe: model -> information-plane statistics.

* :class:`ProbeConfig` (``config.py``): every probe setting, once;
* :func:`analyze` (``analyze.py``): one model, one pass, every hidden state -> :class:`ProbeResult`
  (composes ``plan.py`` corpus -> batches -> labels, ``run.py`` forward with hooks, ``result.py``);
* :func:`sweep` (``sweep.py``): every checkpoint of a run -> trajectory table (resumable);
* :func:`analyze_distributed` (``distributed.py``): the same, sharded over ``torch.distributed`` ranks
  (data parallel, or label rows sharded by label id with ``shard_rows=True``); :func:`sweep_distributed`:
  checkpoints dealt over ranks, resumable per checkpoint;
* building blocks: n-gram labels (``labels.py``), hidden-state hooks (``capture.py``),
  loading (``models.py``).
"""

from .analyze import analyze
from .capture import HiddenStateCapture, find_hidden_sites, forward_batch
from .config import ProbeConfig
from .distributed import analyze_distributed, shard_indices, sweep_distributed
from .labels import LabelCounter, NgramTable, ngram_tuples, valid_positions
from .models import LoadedModel, load_model, smollm2_path
from .plan import ProbeBatch, ProbePlan, prepare_plan
from .result import ProbeResult
from .run import ProbeRun, run_plan
from .sweep import SweepResult, list_checkpoints, sweep

__all__ = [
    "ProbeConfig",
    "analyze",
    "ProbeResult",
    "ProbePlan",
    "ProbeBatch",
    "prepare_plan",
    "ProbeRun",
    "run_plan",
    "sweep",
    "SweepResult",
    "list_checkpoints",
    "analyze_distributed",
    "sweep_distributed",
    "shard_indices",
    "valid_positions",
    "ngram_tuples",
    "NgramTable",
    "LabelCounter",
    "HiddenStateCapture",
    "find_hidden_sites",
    "forward_batch",
    "load_model",
    "LoadedModel",
    "smollm2_path",
]
