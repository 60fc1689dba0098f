"""Estimators: pure math on tensors (imports nothing else from infoplane).

Streaming estimators share one contract (:class:`StreamingEstimator`: update / compute / reset / merge /
state_dict / load_state_dict / sync), see :mod:`infoplane.estimators.protocol`.
"""

from .accumulator import SoftEntropyAccumulator
from .calibration import calibrate_temperature
from .labels import PreparedLabels
from .matrix import OnlineMatrixEntropy, matrix_entropy, patch_matrix_entropy
from .protocol import StreamingEstimator
from .reference import reference_hash, reference_points
from .result import SoftEntropyResult
from .sharded import ShardedRowsAccumulator
from .soft import soft_assign, soft_entropy, soft_mutual_information

__all__ = [
    "calibrate_temperature",
    "reference_points",
    "reference_hash",
    "soft_assign",
    "soft_entropy",
    "soft_mutual_information",
    "SoftEntropyAccumulator",
    "ShardedRowsAccumulator",
    "SoftEntropyResult",
    "PreparedLabels",
    "StreamingEstimator",
    "matrix_entropy",
    "patch_matrix_entropy",
    "OnlineMatrixEntropy",
]
