"""Pure helpers of the GAPT phase controller's ``rule="windowed"`` (see
:class:`~infoplane.train.phases.PhaseController`).

The rule is ours (a plateau test that can fail and adapts after warm-up) on the CE and MBE signals of
F. Yu, "Memorization-Compression Cycles Improve Generalization" (arXiv:2505.08727); ``W_m = patience_mem``
and ``W_a = patience_comp`` are window lengths in steps, thresholds relative::

    memorize (>= 2 W_m steps in): g_ce := (mean CE[prev W_m] - mean CE[last W_m]) / |mean CE[prev W_m]|
              g_ce < tau_ce -> compress, CE_ref := mean CE[last W_m]                      (CE plateau)
    compress: mean CE[last <= W_a] > (1 + spike_tol) CE_ref -> memorize                   (CE spike)
              r_t := mean_l MBE_l / MBE_l(first value of l in this phase)   (relative to the phase's start)
              >= 2 W_a measured steps: g_a := mean r[prev W_a] - mean r[last W_a];  g_a < tau_mbe -> memorize

Windows restart at every switch: a phase lasts >= ``2 W`` steps and as long as its signal still improves by
the threshold per window (CE: against the phase's own recent past, not a global minimum; MBE: relative to
where this compression phase began). Defaults W 20 / 20, tau 0.01 / 0.01, spike 0.1.

The window state is a dict ``{"ce": [CE history], "r": [MBE ratio history], "start": {layer: first MBE of
the phase}, "ce_ref": CE_ref or None}``; these functions are pure apart from :func:`mbe_ratio`, which records
a layer's first value in ``start``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["NEAR_ZERO", "json_key", "new_window", "window_state", "load_window", "ce_plateau_gain",
           "mbe_ratio", "ratio_decrease"]

NEAR_ZERO = 1e-12  # |best| below this -> relative improvement defined as 0 (mod_gpt src/gapt.py)


def json_key(k: Any) -> Any:
    """A layer key as JSON keeps it: int and str unchanged, anything else as its ``str``."""
    return k if isinstance(k, (int, str)) else str(k)


def new_window(ce_ref: float | None = None) -> dict[str, Any]:
    """An empty window state (histories cleared; ``ce_ref`` the CE reference of a compression phase)."""
    return {"ce": [], "r": [], "start": {}, "ce_ref": ce_ref}


def window_state(win: Mapping[str, Any]) -> dict[str, Any]:
    """JSON-serialisable copy of a window state (``start`` as ``[key, value]`` pairs: int keys survive)."""
    return {"ce": list(win["ce"]), "r": list(win["r"]),
            "start": [[json_key(k), v] for k, v in win["start"].items()], "ce_ref": win["ce_ref"]}


def load_window(w: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`window_state` (KeyError / TypeError on a malformed state)."""
    return {"ce": [float(v) for v in w["ce"]], "r": [float(v) for v in w["r"]],
            "start": {k: float(v) for k, v in w["start"]},
            "ce_ref": None if w["ce_ref"] is None else float(w["ce_ref"])}


def ce_plateau_gain(ce: list[float], w: int) -> tuple[float, float]:
    """``(g_ce, mean CE[last w])`` from a CE history of >= ``2 w`` values (nats; g_ce relative, unitless)."""
    prev, last = sum(ce[-2 * w:-w]) / w, sum(ce[-w:]) / w
    # relative improvement of the windowed mean CE: (prev - last) / |prev|
    return (0.0 if abs(prev) <= NEAR_ZERO else (prev - last) / abs(prev)), last


def mbe_ratio(mbe: Mapping[Any, float], start: dict[Any, float]) -> float:
    """``r_t``: mean over layers of MBE_l / MBE_l(first value of l in this phase); records new layers'
    first values in ``start`` (a layer starting at ~0 contributes 1)."""
    ratios = []
    for k, v in mbe.items():
        v0 = start.setdefault(k, v)
        ratios.append(v / v0 if abs(v0) > NEAR_ZERO else 1.0)  # MBE relative to this phase's start
    return sum(ratios) / len(ratios)


def ratio_decrease(r: list[float], w: int) -> float:
    """``g_a``: windowed decrease of the MBE ratio over a history of ``2 w`` values, in units of the phase's
    start value."""
    return sum(r[:w]) / w - sum(r[w:]) / w
