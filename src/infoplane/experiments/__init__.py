"""Reproduction experiments: one module per experiment, each ``config dataclass -> results files``.

=== ============================ ==========================================================================
 #  module                       reproduces
=== ============================ ==========================================================================
 1  ``cycles``                   Yu 2025 RQ1: oscillating cos(grad CE, grad MBE) under CE-only training
 2  ``lm_gapt``                  Yu 2025: GAPT vs baseline LM (MBE -50%, CE -4.8%), plus static CE + MBE
 3  ``arithmetic``               Yu 2025: multiplication OOD generalisation (+35%)
 4  ``forgetting``               Yu 2025: conflicting tasks, representation separation (+97%)
 5  ``plane_over_training``      Conklin et al. 2026: information-plane trajectories of experiment 2
 6  ``pretrained``               Conklin et al. 2026: SmolLM2-135M per-layer information plane on KJV
=== ============================ ==========================================================================

:mod:`~infoplane.experiments.registry` lists them (with their dependencies) and takes new ones
(:func:`register`); :mod:`~infoplane.experiments.runner` runs them in dependency order, resumably, in worker
processes; :mod:`~infoplane.experiments.common` holds the resumable single run and shared statistics;
:mod:`~infoplane.experiments.presentation` the helpers of the modules' ``describe`` / ``figures`` hooks;
:mod:`~infoplane.experiments.claims` turns their numbers into verdicts. ``infoplane reproduce`` drives all.
"""

from infoplane.experiments.claims import CLAIMS, evaluate_claims
from infoplane.experiments.common import config_hash, run_experiment
from infoplane.experiments.registry import EXPERIMENTS, ExperimentSpec, get, make_config, register, unregister

__all__ = ["CLAIMS", "EXPERIMENTS", "ExperimentSpec", "config_hash", "evaluate_claims", "get", "make_config",
           "register", "run_experiment", "unregister"]
