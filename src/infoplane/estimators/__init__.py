"""Estimators: pure math on tensors (imports nothing else from infoplane)."""

from .accumulator import PreparedLabels, SoftEntropyAccumulator, SoftEntropyResult
from .calibration import calibrate_temperature
from .matrix import OnlineMatrixEntropy, matrix_entropy, patch_matrix_entropy
from .reference import reference_hash, reference_points
from .soft import soft_assign, soft_entropy, soft_mutual_information

__all__ = [
    "calibrate_temperature",
    "reference_points",
    "reference_hash",
    "soft_assign",
    "soft_entropy",
    "soft_mutual_information",
    "SoftEntropyAccumulator",
    "SoftEntropyResult",
    "PreparedLabels",
    "matrix_entropy",
    "patch_matrix_entropy",
    "OnlineMatrixEntropy",
]
