"""Downstream: models -> task scores, and scores <-> information-plane measures across models.

* ``tasks.py``: the seeded builder of the local lm-eval task suite (Brown corpus held-out text, arithmetic);
  ``brown.py`` reads the corpus; the built suite ships in ``suite/``;
* ``lm.py``: :class:`NativeLM`, the lm-evaluation-harness model of a native checkpoint (lm-eval imported
  only there: the ``downstream`` extra);
* ``evaluate.py``: offline ``simple_evaluate`` on the suite, lm-eval result files written and read;
* ``correlate.py``: Pearson / Spearman with clustered bootstrap intervals and partial correlations;
* ``preference.py``: preference information I(Z; preference) with a text-level permutation null;
* ``figures.py``: measure-vs-score scatters and the information plane coloured by score.
"""

from .correlate import DEFAULT_MEASURES, cluster_bootstrap_ci, correlate, partial_correlation

__all__ = ["correlate", "partial_correlation", "cluster_bootstrap_ci", "DEFAULT_MEASURES"]
