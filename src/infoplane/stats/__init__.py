"""The verdict engine: effect sizes with confidence intervals, exact permutation tests, Holm correction.

Pure numpy/scipy; imports nothing from the rest of infoplane. Every claim of a report goes through
:func:`evaluate`, which applies the rule below (also available as :data:`RULE_TEXT` for the report).

Replicates are independent training runs (one value per seed and arm, paired by seed) or independent
text samples -- never layers of one model, never runs that share their training prefix.

The rule, per claim (``d_i`` = treatment_i - baseline_i per seed, or value_i - null for a one-sample claim):

1. **Preconditions first.** Each claim declares :class:`Precondition` s (name, passed, detail); the engine
   adds ``min_seeds`` (n >= the tier's minimum) and ``finite_values``. Any failed precondition gives
   **not testable at this scale**, naming every failed one. This is decided before any test is run,
   so the effect cannot influence it; such claims are left out of the Holm family.
2. **Effect and 95 % CI**: mean of ``d_i`` with a t interval (df = n - 1); relative effect
   mean(treatment)/mean(baseline) - 1 with a delta-method t interval.
3. **p-value**: exact paired sign-flip permutation test on ``sum(d_i)`` (all 2^n sign patterns, the
   observed one included) when at most 16 differences are non-zero, Monte Carlo (seeded, +1 corrected)
   above. Zero differences are kept: they do not change the sum under any flip, so they neither help nor
   hurt; all-zero differences give p = 1. With n non-zero differences the smallest attainable p is 2^-n
   (0.125 for 3 seeds), however large the effect.
4. **Holm** step-down adjustment of the one-sided p-values in the claimed direction across the testable
   claims of one report (family-wise error <= alpha for "holds"); the one-sided p-values in the opposite
   direction form a second Holm family of the same claims.
5. **Verdict**: Holm-adjusted claimed-direction p < alpha (0.05): **holds**; Holm-adjusted
   opposite-direction p < alpha: **does not hold**; otherwise **inconclusive**.

Also here: :func:`bootstrap_ci` for statistics that are not a mean (a correlation, a slope), and the
permutation nulls for mutual information (:func:`label_permutations`, :func:`compare_to_null`): labels per
position are shuffled over positions; labels per text are shuffled across texts, so that all positions of a
text keep one shared label (positions of one text are not exchangeable).
"""

from ._checks import ALTERNATIVES
from .effects import BootstrapCI, Effect, bootstrap_ci, paired_effect
from .multiplicity import holm
from .nulls import NullComparison, compare_to_null, label_permutations
from .signflip import EXACT_MAX_N, SignFlipResult, sign_flip_test
from .surrogates import SurrogateTest, ar1_spectral_test, sign_change_test, significant_sign_changes
from .verdicts import RULE_TEXT, VERDICTS, Claim, ClaimResult, Precondition, evaluate

__all__ = [
    "VERDICTS", "RULE_TEXT", "ALTERNATIVES", "EXACT_MAX_N",
    "Effect", "paired_effect", "BootstrapCI", "bootstrap_ci",
    "SignFlipResult", "sign_flip_test", "holm",
    "Precondition", "Claim", "ClaimResult", "evaluate",
    "label_permutations", "NullComparison", "compare_to_null",
    "SurrogateTest", "ar1_spectral_test", "sign_change_test", "significant_sign_changes",
]
