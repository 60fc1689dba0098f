"""GAPT phase controller: when to switch between memorisation (CE only) and compression (CE + lambda MBE).

Pure python (no torch). Two rule sets from F. Yu, "Memorization-Compression Cycles Improve Generalization"
(arXiv:2505.08727) and its reference code (fangyuan-ksgk/mod_gpt: ``RRScheduler`` in ``train_pcgrad.py``,
``GatedPhaseTransition`` in ``src/gapt.py``):

``rule="paper"`` (paper-era ``RRScheduler``), evaluated on every :meth:`PhaseController.step`::

    spike  := CE >= (1 + spike_tol) * best_CE                    (best_CE = +inf -> no spike)
    c_mem  := 0 if best_CE - CE > tau_ce else c_mem + 1;  best_CE := min(best_CE, CE)
    c_comp := 0 if max_l(best_MBE[l] - MBE_l) > tau_mbe else c_comp + 1;  best_MBE[l] := min(...)
    compress and (c_comp >= patience_comp or spike) -> memorize, c_mem := 0, best_MBE := +inf
    memorize and c_mem >= patience_mem             -> compress, c_comp := 0, best_CE := +inf

  Absolute thresholds (defaults tau_ce = delta_CE = 0.01 nats, tau_mbe = delta_MBE = 0.002), patience 125/125,
  spike factor 1.1. Both counters run in both phases. Because ``best - CE = +inf > tau`` on the first step
  (and on the first step after a reset), that step always resets its counter: a constant CE from step 1
  switches to compression at step ``patience_mem + 1``.

``rule="relative"`` (later ``GatedPhaseTransition``)::

    non-finite signal -> step skipped (recorded in ``skipped``), nothing else changes
    g_ce  := (best_CE - CE) / |best_CE|   (0 if best_CE is +inf or |best_CE| <= 1e-12);  same for g_mbe
    best_CE := min(best_CE, CE); best_MBE := min(best_MBE, MBE)      (global minima, never reset)
    memorize: s_m := 0 if g_ce > tau_ce else s_m + 1;  s_m >= patience_mem -> s_m := 0, compress
    compress: g_ce < -spike_tol -> s_a := 0, memorize                                  (CE spike)
              else s_a := 0 if g_mbe > tau_mbe else s_a + 1;  s_a >= patience_comp -> s_a := 0, memorize

  Relative thresholds (defaults tau 0.01 / 0.01, spike 0.1, patience 5 / 5 as in the reference class). Here
  the first step counts (``g = 0``): a constant CE from step 1 switches at step ``patience_mem``.

``rule="windowed"`` (ours: windowed relative plateaus of CE and MBE that adapt after warm-up; the rule and
its pure helpers are in :mod:`infoplane.train.phase_windows`).

Signals
-------
``mbe`` is a float or a mapping ``layer -> float``. Paper rule: the MBE improvement is the maximum over the
layers present in this step (a layer seen for the first time, or after a reset, counts as an improvement of
+inf, as in the reference). Relative rule: the mapping is reduced to its mean (the reference passes one
combined ``L_a``); pass a consistent layer set. ``ema=beta`` smooths each signal (and each layer separately)
with ``s_t = beta s_{t-1} + (1 - beta) x_t`` initialised at the first finite value -- a documented deviation
from both reference rules, which use raw single-batch losses. With either rule a non-finite CE or MBE value
skips the step (the paper-era code has no guard; comparisons with NaN would silently corrupt its minima).

The phase returned by :meth:`PhaseController.step` is the phase to use for the *next* optimisation step (the
reference updates the phase from the current loss first and then uses the new phase).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from enum import Enum
from typing import Any

from infoplane.train.phase_windows import (
    NEAR_ZERO,
    ce_plateau_gain,
    json_key,
    load_window,
    mbe_ratio,
    new_window,
    ratio_decrease,
    window_state,
)

__all__ = ["Phase", "PhaseController", "PhaseControllerConfig", "RULES", "phase_lengths"]

RULES = ("relative", "paper", "windowed")

# Reference defaults (mod_gpt: RRScheduler in train_pcgrad.py; GatedPhaseTransition in src/gapt.py)
_DEFAULTS: dict[str, dict[str, float | int]] = {
    "paper": {"patience_mem": 125, "patience_comp": 125, "tau_ce": 0.01, "tau_mbe": 0.002, "spike_tol": 0.1},
    "relative": {"patience_mem": 5, "patience_comp": 5, "tau_ce": 0.01, "tau_mbe": 0.01, "spike_tol": 0.1},
    "windowed": {"patience_mem": 20, "patience_comp": 20, "tau_ce": 0.01, "tau_mbe": 0.01, "spike_tol": 0.1},
}
_SCALAR_KEY = "__scalar__"


class Phase(str, Enum):
    """Training phase. Compares equal to its string value (``Phase.MEMORIZE == "memorize"``)."""

    MEMORIZE = "memorize"
    COMPRESS = "compress"

    def __str__(self) -> str:  # pragma: no cover - trivial
        return self.value


def _finite_or_none(x: float) -> float | None:
    """JSON-safe float: +/-inf and NaN -> None."""
    return x if math.isfinite(x) else None


def _none_to_inf(x: float | None) -> float:
    return math.inf if x is None else float(x)


class PhaseController:
    """Memorise / compress state machine (GAPT), see the module docstring for the rule sets.

    Args:
        rule: ``"relative"`` (``GatedPhaseTransition``, default), ``"paper"`` (``RRScheduler``) or
            ``"windowed"`` (windowed relative plateaus; ``patience_*`` are then window lengths).
        patience_mem: steps without CE improvement before switching to compression (``p_m``, int >= 1).
        patience_comp: steps without MBE improvement before returning to memorisation (``p_a``, int >= 1).
        tau_ce: CE improvement threshold (absolute nats for ``"paper"``, relative for ``"relative"``), >= 0.
        tau_mbe: MBE improvement threshold (absolute / relative), >= 0.
        spike_tol: CE spike tolerance, >= 0: paper ``CE >= (1 + spike_tol) best_CE``; relative
            ``(best_CE - CE) / |best_CE| < -spike_tol``.
        ema: ``None`` (raw signals) or smoothing factor ``beta`` in ``[0, 1)``.
        start: initial phase (default ``"memorize"``, as both references).

    ``None`` for a knob selects the rule's reference default.
    """

    def __init__(
        self,
        rule: str = "relative",
        patience_mem: int | None = None,
        patience_comp: int | None = None,
        tau_ce: float | None = None,
        tau_mbe: float | None = None,
        spike_tol: float | None = None,
        ema: float | None = None,
        start: str | Phase = Phase.MEMORIZE,
    ) -> None:
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
        d = _DEFAULTS[rule]
        self.rule = rule
        self.patience_mem = self._check_patience(
            "patience_mem", d["patience_mem"] if patience_mem is None else patience_mem
        )
        self.patience_comp = self._check_patience(
            "patience_comp", d["patience_comp"] if patience_comp is None else patience_comp
        )
        self.tau_ce = self._check_tol("tau_ce", d["tau_ce"] if tau_ce is None else tau_ce)
        self.tau_mbe = self._check_tol("tau_mbe", d["tau_mbe"] if tau_mbe is None else tau_mbe)
        self.spike_tol = self._check_tol("spike_tol", d["spike_tol"] if spike_tol is None else spike_tol)
        if ema is not None:
            if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0.0 <= float(ema) < 1.0:
                raise ValueError(f"ema must be None or a float beta in [0, 1), got {ema!r}")
            ema = float(ema)
        self.ema = ema
        try:
            self._start = Phase(start)
        except ValueError as exc:
            raise ValueError(f"start must be 'memorize' or 'compress', got {start!r}") from exc
        self.reset()

    # ------------------------------------------------------------------ validation helpers
    @staticmethod
    def _check_patience(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        return int(value)

    @staticmethod
    def _check_tol(name: str, value: Any) -> float:
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"{name} must be a finite float >= 0, got {value!r}")
        return float(value)

    # ------------------------------------------------------------------ state
    def reset(self) -> None:
        """Back to the start phase with empty history (configuration kept)."""
        self._phase = self._start
        self._step = 0
        self.best_ce = math.inf
        self.best_mbe: dict[Any, float] = {}  # layer (or _SCALAR_KEY) -> best value
        self.count_mem = 0  # paper c_mem / relative s_m
        self.count_comp = 0  # paper c_comp / relative s_a
        self._ema_ce: float | None = None
        self._ema_mbe: dict[Any, float] = {}
        self.events: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self._win: dict[str, Any] = new_window()  # windowed rule only

    @property
    def phase(self) -> Phase:
        """Current phase (the one to train with next)."""
        return self._phase

    @property
    def step_count(self) -> int:
        """Number of :meth:`step` calls so far, including skipped (non-finite) ones."""
        return self._step

    @property
    def is_compress(self) -> bool:
        return self._phase is Phase.COMPRESS

    # ------------------------------------------------------------------ signal handling
    @staticmethod
    def _as_mbe_dict(mbe: float | Mapping[Any, float] | None) -> dict[Any, float]:
        if mbe is None:
            return {}
        if isinstance(mbe, Mapping):
            if len(mbe) == 0:
                raise ValueError("mbe mapping must contain at least one layer")
            return {k: float(v) for k, v in mbe.items()}
        return {_SCALAR_KEY: float(mbe)}

    def _smooth(self, ce: float, mbe: dict[Any, float]) -> tuple[float, dict[Any, float]]:
        beta = self.ema
        if beta is None:
            return ce, mbe
        self._ema_ce = (
            ce if self._ema_ce is None else beta * self._ema_ce + (1.0 - beta) * ce
        )  # EMA (deviation)
        out = {}
        for k, v in mbe.items():
            prev = self._ema_mbe.get(k)
            out[k] = v if prev is None else beta * prev + (1.0 - beta) * v
            self._ema_mbe[k] = out[k]
        return self._ema_ce, out

    @staticmethod
    def _relative_gain(best: float, value: float) -> float:
        # mod_gpt src/gapt.py: g = (best - L) / |best|, 0 if best is inf or ~0
        if math.isinf(best) or abs(best) <= NEAR_ZERO:
            return 0.0
        return (best - value) / abs(best)

    def _switch(self, to: Phase, reason: str, values: dict[str, Any]) -> None:
        self.events.append(
            {
                "step": self._step,
                "from": self._phase.value,
                "to": to.value,
                "reason": reason,
                "values": values,
            }
        )
        self._phase = to

    # ------------------------------------------------------------------ main entry
    def step(self, ce: float, mbe: float | Mapping[Any, float] | None) -> Phase:
        """Feed one step's CE (nats) and MBE (float, or ``{layer: float}``); returns the phase to use next.

        Non-finite values skip the step (appended to :attr:`skipped`; counters, minima and EMA unchanged).
        ``mbe=None`` means "MBE not measured this step": the CE logic runs as usual, the MBE counter and
        minima are left unchanged (so an MBE plateau cannot complete on such steps).
        """
        self._step += 1
        ce = float(ce)
        mbe_d = self._as_mbe_dict(mbe)
        if not math.isfinite(ce) or not all(math.isfinite(v) for v in mbe_d.values()):
            self.skipped.append(
                {
                    "step": self._step,
                    "reason": "non_finite",
                    "phase": self._phase.value,
                    "values": {
                        "ce": _finite_or_none(ce),
                        "mbe": {str(json_key(k)): _finite_or_none(v) for k, v in mbe_d.items()},
                    },
                }
            )
            return self._phase
        ce_s, mbe_s = self._smooth(ce, mbe_d)
        if self.rule == "paper":
            self._step_paper(ce_s, mbe_s)
        elif self.rule == "windowed":
            self._step_windowed(ce_s, mbe_s)
        else:
            self._step_relative(ce_s, mbe_s)
        return self._phase

    def _values(self, ce: float, mbe: dict[Any, float]) -> dict[str, Any]:
        if not mbe:
            mbe_out: Any = None
        elif set(mbe) == {_SCALAR_KEY}:
            mbe_out = mbe[_SCALAR_KEY]
        else:
            mbe_out = {str(json_key(k)): v for k, v in mbe.items()}
        return {
            "ce": ce,
            "mbe": mbe_out,
            "best_ce": _finite_or_none(self.best_ce),
            "count_mem": self.count_mem,
            "count_comp": self.count_comp,
        }

    def _step_paper(self, ce: float, mbe: dict[Any, float]) -> None:
        # mod_gpt train_pcgrad.py RRScheduler; spike judged against best_CE *before* this step's update
        spike = ce >= (1.0 + self.spike_tol) * self.best_ce
        self.count_mem = 0 if self.best_ce - ce > self.tau_ce else self.count_mem + 1  # absolute delta_CE
        self.best_ce = min(self.best_ce, ce)
        if mbe:
            gain = max(self.best_mbe.get(k, math.inf) - v for k, v in mbe.items())  # max over layers
            self.count_comp = 0 if gain > self.tau_mbe else self.count_comp + 1  # absolute delta_MBE
        for k, v in mbe.items():
            self.best_mbe[k] = min(self.best_mbe.get(k, math.inf), v)
        if self._phase is Phase.COMPRESS and (self.count_comp >= self.patience_comp or spike):
            reason = "ce_spike" if spike else "mbe_plateau"
            values = self._values(ce, mbe)
            self._switch(Phase.MEMORIZE, reason, values)
            self.count_mem = 0
            self.best_mbe = {}  # best_MBE := +inf at compression end (RRScheduler)
        elif self._phase is Phase.MEMORIZE and self.count_mem >= self.patience_mem:
            self._switch(Phase.COMPRESS, "ce_plateau", self._values(ce, mbe))
            self.count_comp = 0
            self.best_ce = math.inf  # best_CE := +inf at compression start (RRScheduler)

    def _step_relative(self, ce: float, mbe: dict[Any, float]) -> None:
        # mod_gpt src/gapt.py GatedPhaseTransition; the MBE signal is the mean over the given layers
        g_m = self._relative_gain(self.best_ce, ce)
        self.best_ce = min(self.best_ce, ce)  # global minima, never reset
        g_a = None
        if mbe:
            a = sum(mbe.values()) / len(mbe)
            best_a = self.best_mbe.get(_SCALAR_KEY, math.inf)
            g_a = self._relative_gain(best_a, a)
            self.best_mbe[_SCALAR_KEY] = min(best_a, a)
        if self._phase is Phase.MEMORIZE:
            self.count_mem = 0 if g_m > self.tau_ce else self.count_mem + 1
            if self.count_mem >= self.patience_mem:
                values = self._values(ce, mbe)
                self.count_mem = 0
                self._switch(Phase.COMPRESS, "ce_plateau", values)
        else:
            if g_m < -self.spike_tol:  # CE more than spike_tol above its best
                values = self._values(ce, mbe)
                self.count_comp = 0
                self._switch(Phase.MEMORIZE, "ce_spike", values)
                return
            if g_a is None:  # MBE not measured this step
                return
            self.count_comp = 0 if g_a > self.tau_mbe else self.count_comp + 1
            if self.count_comp >= self.patience_comp:
                values = self._values(ce, mbe)
                self.count_comp = 0
                self._switch(Phase.MEMORIZE, "mbe_plateau", values)

    def _step_windowed(self, ce: float, mbe: dict[Any, float]) -> None:
        # windowed relative plateaus (phase_windows module); count_mem / count_comp = steps into the phase
        w = self._win
        w["ce"] = (w["ce"] + [ce])[-2 * max(self.patience_mem, self.patience_comp):]
        if self._phase is Phase.MEMORIZE:
            self.count_mem += 1
            wm = self.patience_mem
            if self.count_mem < 2 * wm:
                return
            g_ce, last = ce_plateau_gain(w["ce"], wm)
            if g_ce < self.tau_ce:
                values = {**self._values(ce, mbe), "gain": g_ce}
                self._switch(Phase.COMPRESS, "ce_plateau", values)
                self._reset_window(ce_ref=last)
            return
        self.count_comp += 1
        wa = self.patience_comp
        recent = w["ce"][-min(wa, self.count_comp):]
        ce_recent = sum(recent) / len(recent)
        if w["ce_ref"] is not None and ce_recent > (1.0 + self.spike_tol) * w["ce_ref"]:
            self._switch(Phase.MEMORIZE, "ce_spike", {**self._values(ce, mbe), "ce_ref": w["ce_ref"]})
            self._reset_window()
            return
        if not mbe:  # MBE not measured this step
            return
        w["r"] = (w["r"] + [mbe_ratio(mbe, w["start"])])[-2 * wa:]
        if len(w["r"]) < 2 * wa:
            return
        g_a = ratio_decrease(w["r"], wa)
        if g_a < self.tau_mbe:
            self._switch(Phase.MEMORIZE, "mbe_plateau", {**self._values(ce, mbe), "gain": g_a})
            self._reset_window()

    def _reset_window(self, ce_ref: float | None = None) -> None:
        self.count_mem = self.count_comp = 0
        self._win = new_window(ce_ref)

    # ------------------------------------------------------------------ (de)serialisation
    def config(self) -> dict[str, Any]:
        """Constructor arguments (JSON-serialisable)."""
        return {
            "rule": self.rule,
            "patience_mem": self.patience_mem,
            "patience_comp": self.patience_comp,
            "tau_ce": self.tau_ce,
            "tau_mbe": self.tau_mbe,
            "spike_tol": self.spike_tol,
            "ema": self.ema,
            "start": self._start.value,
        }

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable full state (config + counters + minima + EMA + events); inf stored as None.

        Layer keys are stored as ``[key, value]`` pairs so int keys survive a JSON round trip.
        """
        return {
            "version": 1,
            "config": self.config(),
            "phase": self._phase.value,
            "step": self._step,
            "best_ce": _finite_or_none(self.best_ce),
            "best_mbe": [[json_key(k), v] for k, v in self.best_mbe.items()],
            "count_mem": self.count_mem,
            "count_comp": self.count_comp,
            "ema_ce": self._ema_ce,
            "ema_mbe": [[json_key(k), v] for k, v in self._ema_mbe.items()],
            "events": [dict(e) for e in self.events],
            "skipped": [dict(e) for e in self.skipped],
            **({"windowed": window_state(self._win)} if self.rule == "windowed" else {}),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output, *including its configuration* (so continuation is identical)."""
        try:
            cfg = dict(state["config"])
            fresh = PhaseController(**cfg)
            self.__dict__.update(fresh.__dict__)
            self._phase = Phase(state["phase"])
            self._step = int(state["step"])
            self.best_ce = _none_to_inf(state["best_ce"])
            self.best_mbe = {k: float(v) for k, v in state["best_mbe"]}
            self.count_mem = int(state["count_mem"])
            self.count_comp = int(state["count_comp"])
            self._ema_ce = None if state["ema_ce"] is None else float(state["ema_ce"])
            self._ema_mbe = {k: float(v) for k, v in state["ema_mbe"]}
            self.events = [dict(e) for e in state["events"]]
            self.skipped = [dict(e) for e in state.get("skipped", [])]
            if "windowed" in state:
                self._win = load_window(state["windowed"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a PhaseController state_dict (missing/invalid field: {exc})") from exc

    @classmethod
    def from_state_dict(cls, state: Mapping[str, Any]) -> PhaseController:
        obj = cls(**dict(state["config"]))
        obj.load_state_dict(state)
        return obj

    def __repr__(self) -> str:
        return (
            f"PhaseController(rule={self.rule!r}, phase={self._phase.value!r}, step={self._step}, "
            f"switches={len(self.events)})"
        )


@dataclass(frozen=True)
class PhaseControllerConfig:
    """Typed, validated settings of a :class:`PhaseController` (same fields and meaning as its arguments;
    ``None`` selects the rule's reference default). Invalid values raise ValueError at construction."""

    rule: str = "relative"
    patience_mem: int | None = None
    patience_comp: int | None = None
    tau_ce: float | None = None
    tau_mbe: float | None = None
    spike_tol: float | None = None
    ema: float | None = None
    start: str = "memorize"

    def __post_init__(self) -> None:
        self.build()  # validates every field with the controller's own checks

    def build(self) -> PhaseController:
        """A fresh controller with these settings."""
        return PhaseController(**asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PhaseControllerConfig:
        """Strict: an unknown key (a typo such as ``patience_memory``) is a ValueError naming it."""
        from infoplane.io import strict_from_dict

        return strict_from_dict(cls, dict(d))


def phase_lengths(events: list[Mapping[str, Any]], steps: int,
                  start: str = "memorize") -> list[dict[str, Any]]:
    """Phases of a run from its switch events: ``[{"phase", "first", "last", "length", "complete"}]``.

    An event at controller step ``s`` sets the phase of steps ``s + 1, ...``; the last phase is cut by the
    end of the run (``complete=False``). ``steps``: number of optimiser steps of the run.
    """
    out, first, phase = [], 1, str(Phase(start).value)
    for e in events:
        s = int(e["step"])
        if s >= first:
            out.append({"phase": phase, "first": first, "last": s, "length": s - first + 1, "complete": True})
        first, phase = s + 1, str(e["to"])
    if first <= steps:
        out.append({"phase": phase, "first": first, "last": steps, "length": steps - first + 1,
                    "complete": False})
    return out
