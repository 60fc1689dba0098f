"""Estimators: pure math on tensors (imports nothing else from infoplane)."""

from .matrix import OnlineMatrixEntropy, matrix_entropy, patch_matrix_entropy
