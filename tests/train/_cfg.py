"""Test helper: a TrainConfig from flat keyword arguments (model / objective fields routed to their parts)."""

from __future__ import annotations

from typing import Any

from infoplane.train.config import TrainConfig

_MODEL = ("n_layer", "n_head", "d_model", "block_size", "pos_encoding", "dropout", "tie_weights")
_OBJECTIVE = {"objective": "kind", "mbe_weight": "mbe_weight", "patch_size": "patch_size",
              "mbe_layers": "layers", "log_mbe": "log_mbe", "mbe_scheme": "scheme"}


def flat_config(**flat: Any) -> TrainConfig:
    model = {k: flat.pop(k) for k in _MODEL if k in flat}
    objective = {v: flat.pop(k) for k, v in _OBJECTIVE.items() if k in flat}
    return TrainConfig(model=model, objective=objective, **flat)
