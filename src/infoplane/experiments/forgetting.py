"""Experiment 4: catastrophic forgetting / representation separation (Yu 2025; mod_gpt ``forget.py``).

A one-hidden-layer ReLU student (10 -> H -> 10, L1 loss) first learns the *old* task ("negative":
x ~ p2, teacher theta0 - delta), then is fine-tuned on the conflicting *new* task ("positive": x ~ p1,
theta0 + delta). Fine-tuning arms, all from the same pretrained student per seed:

* ``baseline``: L1 only;
* ``static``: L1 + lambda * MBE at every step;
* ``gapt``: L1, plus lambda * MBE while the :class:`~infoplane.train.phases.PhaseController` is in
  compression.

MBE is taken across samples (mod_gpt ``forget.py``): hidden activations of a batch of 32, ``[1, 32, H]``,
in patches of 8 consecutive samples (:func:`infoplane.estimators.patch_matrix_entropy`).

Metrics after fine-tuning (on fresh held-out samples): separation
``||mu_pos - mu_neg|| / sqrt((tr var_pos + tr var_neg) / 2)`` of hidden activations for p1 vs p2 inputs
(mod_gpt ``forget.py``) and its two parts, the between-task distance (numerator) and the within-task spread
(denominator), with the norm of each task's mean activation (:mod:`.forgetting_metrics`); L1 loss on the old
task (interference) and on the new task; selectivity (share of units with ``|(m1 - m2)/(m1 + m2)| > 0.5``);
MBE of each task's hidden activations, uncentered (the papers') and centered.

The MBE term enters the loss through the reference's softplus floor by default (``mbe_floor="softplus"``;
mod_gpt ``forget.py`` runs GAPT with ``softplus``), for the static and the GAPT arm alike; ``"none"`` gives
``L1 + lambda * MBE``. Layers: the student has one hidden layer, which is the layer regularised (as in
``forget.py``); the references' ``rotate`` scheme (one layer per step, skipping the first and last) selects no
layer of a one-layer network, so ``layers="all"`` is used here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infoplane.data.tasks import make_conflict_task, make_conflict_teacher
from infoplane.experiments.common import ExperimentPaths, Progress, seed_everything, summarize
from infoplane.experiments.forgetting_metrics import (
    FLOORS,
    floored_penalty,
    sample_mbe,
    selectivity,
    separation,
    separation_parts,
)
from infoplane.io import atomic_write_csv
from infoplane.train.objective import GaptObjective, ObjectiveConfig
from infoplane.train.phases import PhaseControllerConfig

NAME = "forgetting"
ARMS = ("baseline", "static", "gapt")

__all__ = ["NAME", "ForgettingConfig", "run", "separation", "separation_parts", "selectivity", "train_arm",
           "decomposition_rows"]


@dataclass(frozen=True)
class ForgettingConfig:
    """Sizes and hyper-parameters (mod_gpt forget.py values scaled down: patience 125/75 -> 40/25 steps)."""

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4, 5)
    dim: int = 10
    hidden: int = 20
    out: int = 10
    batch_size: int = 32
    lr: float = 0.01
    pretrain_steps: int = 400
    finetune_steps: int = 800
    mbe_weight: float = 10.0
    patch_size: int = 8
    patience_mem: int = 40
    patience_comp: int = 25
    tau_ce: float = 0.01
    tau_mbe: float = 0.01
    spike_tol: float = 0.1
    ema: float | None = 0.9
    n_eval: int = 2048
    n_train: int = 4096
    mbe_floor: str = "softplus"  # "softplus" (mod_gpt forget.py) or "none"

    def __post_init__(self) -> None:
        if self.mbe_floor not in FLOORS:
            raise ValueError(f"ForgettingConfig.mbe_floor must be one of {FLOORS}, got {self.mbe_floor!r}")

    @classmethod
    def quick(cls) -> ForgettingConfig:
        return cls(pretrain_steps=200, finetune_steps=300, n_train=2048, n_eval=1024)

    @classmethod
    def demo(cls) -> ForgettingConfig:
        return cls(seeds=tuple(range(8)), pretrain_steps=600, finetune_steps=1200)

    @classmethod
    def full(cls) -> ForgettingConfig:
        return cls(seeds=tuple(range(12)), pretrain_steps=600, finetune_steps=1200)


class Student(nn.Module):
    """``x [N, D] -> (y [N, O], h [N, H])`` with one ReLU hidden layer."""

    def __init__(self, dim: int, hidden: int, out: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc1(x))
        return self.fc2(h), h


def _batches(x: torch.Tensor, y: torch.Tensor, batch: int, steps: int, gen: torch.Generator):
    n = x.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen)
        yield x[idx], y[idx]


def train_arm(student: Student, arm: str, x: torch.Tensor, y: torch.Tensor, cfg: ForgettingConfig,
              seed: int) -> dict[str, float]:
    """Fine-tune ``student`` in place on (x, y) with arm ``arm``; returns training statistics."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(student.parameters(), lr=cfg.lr)
    kind = {"baseline": "ce", "static": "ce+mbe", "gapt": "gapt"}[arm]
    # MBE across samples: the batch is one sequence of B samples, patches of `patch_size` (mod_gpt
    # ``forget.py``)
    objective = GaptObjective(
        ObjectiveConfig(kind=kind, mbe_weight=cfg.mbe_weight, patch_size=cfg.patch_size, layers="all",
                        log_mbe=False),
        controller_config=PhaseControllerConfig(
            rule="relative", patience_mem=cfg.patience_mem, patience_comp=cfg.patience_comp,
            tau_ce=cfg.tau_ce, tau_mbe=cfg.tau_mbe, spike_tol=cfg.spike_tol, ema=cfg.ema,
        ) if kind == "gapt" else None)
    n_comp = 0
    for step, (xb, yb) in enumerate(_batches(x, y, cfg.batch_size, cfg.finetune_steps, gen)):
        pred, h = student(xb)
        l1 = (pred - yb).abs().mean()  # the base loss of this task: L1 regression (mod_gpt ``forget.py``)
        terms = objective(l1, [h.unsqueeze(0)], step=step)  # the GAPT step's loss and phase
        loss = terms.loss
        if terms.penalised:  # L1 + floor(lambda * MBE) (mod_gpt src/gapt.py; the floor is an option)
            loss = l1 + floored_penalty(terms.loss - l1, cfg.mbe_floor)
        opt.zero_grad(set_to_none=True)
        if not terms.finite:
            continue  # a non-finite loss skips the update and the controller (as single_step)
        loss.backward()
        opt.step()
        objective.feed(terms.base, terms.mbe)
        n_comp += int(terms.penalised)
    return {"compress_fraction": n_comp / max(cfg.finetune_steps, 1), "n_switches": len(objective.events)}


@torch.no_grad()
def _evaluate(student: Student, data: dict[str, tuple[torch.Tensor, torch.Tensor]],
              patch: int) -> dict[str, float]:
    (xp, yp), (xn, yn) = data["positive"], data["negative"]
    pp, hp = student(xp)
    pn, hn = student(xn)
    parts = separation_parts(hp, hn)
    return {"separation": parts["separation"], "between": parts["between"], "spread": parts["spread"],
            "norm_new": parts["norm_pos"], "norm_old": parts["norm_neg"], "selectivity": selectivity(hp, hn),
            "new_loss": float((pp - yp).abs().mean()), "old_loss": float((pn - yn).abs().mean()),
            "mbe_new": float(sample_mbe(hp, patch)), "mbe_new_centered": float(sample_mbe(hp, patch, True)),
            "mbe_old": float(sample_mbe(hn, patch)), "mbe_old_centered": float(sample_mbe(hn, patch, True)),
            "active_units": float((torch.cat([hp, hn]).amax(0) > 0).float().mean())}


def run(cfg: ForgettingConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """All seeds and arms; writes ``forgetting_runs.csv``; returns the summary with claims data."""
    rows = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny MLP: one thread is fastest and leaves the other core free
    try:
        for seed in cfg.seeds:
            seed_everything(seed)
            teacher = make_conflict_teacher(cfg.dim, cfg.hidden, cfg.out, seed=seed)
            train = {t: make_conflict_task(cfg.n_train, t, teacher, seed=10_000 + 2 * seed + i)
                     for i, t in enumerate(("positive", "negative"))}
            evald = {t: make_conflict_task(cfg.n_eval, t, teacher, seed=20_000 + 2 * seed + i)
                     for i, t in enumerate(("positive", "negative"))}
            torch.manual_seed(seed)
            base = Student(cfg.dim, cfg.hidden, cfg.out)
            opt = torch.optim.Adam(base.parameters(), lr=cfg.lr)
            gen = torch.Generator().manual_seed(seed + 1)
            for xb, yb in _batches(*train["negative"], cfg.batch_size, cfg.pretrain_steps, gen):
                loss = (base(xb)[0] - yb).abs().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            pre = _evaluate(base, evald, cfg.patch_size)
            rows.append({"seed": seed, "arm": "pretrained", **pre, "compress_fraction": 0.0, "n_switches": 0})
            for arm in ARMS:
                student = copy.deepcopy(base)
                stats = train_arm(student, arm, *train["positive"], cfg, seed=seed + 2)
                rows.append({"seed": seed, "arm": arm, **_evaluate(student, evald, cfg.patch_size), **stats})
            last = {r["arm"]: r for r in rows if r["seed"] == seed}
            log(f"seed {seed}: separation " + ", ".join(f"{a} {last[a]['separation']:.3f}" for a in ARMS))
    finally:
        torch.set_num_threads(threads)
    atomic_write_csv(paths.table("runs"), rows)
    atomic_write_csv(paths.table("decomposition"), decomposition_rows(rows))

    def col(arm: str, key: str) -> list[float]:
        return [r[key] for r in rows if r["arm"] == arm]

    metrics = ("separation", "between", "spread", "norm_new", "norm_old", "old_loss", "new_loss",
               "selectivity", "mbe_new", "mbe_new_centered", "mbe_old", "mbe_old_centered",
               "compress_fraction")
    stats = {arm: {m: summarize(col(arm, m)) for m in metrics} for arm in ("pretrained", *ARMS)}
    scale = (f"MLP {cfg.dim}-{cfg.hidden}-{cfg.out}, {cfg.pretrain_steps} pretrain + {cfg.finetune_steps} "
             f"fine-tune steps, batch {cfg.batch_size}, {len(cfg.seeds)} seeds")
    # declared precondition of the interference claim: fine-tuning the baseline does interfere (its old-task
    # loss rises above the pretrained student's), else there is nothing for GAPT to reduce
    old_pre = float(np.mean(col("pretrained", "old_loss")))
    old_base = float(np.mean(col("baseline", "old_loss")))
    forgets = [{"name": "baseline_forgets", "passed": bool(old_base > old_pre),
                "detail": f"baseline old-task L1 {old_base:.3f} after fine-tuning vs {old_pre:.3f} before"}]
    common = {"paired": True, "seeds": list(cfg.seeds), "replicates": "independent seeds (teacher, data, "
              "student)", "scale": scale, "treatment_label": "GAPT", "baseline_label": "baseline"}
    claims = {
        "forget_separation": {"treatment": col("gapt", "separation"),
                              "baseline": col("baseline", "separation"), "unit": "ratio", **common},
        "forget_old_loss": {"treatment": col("gapt", "old_loss"), "baseline": col("baseline", "old_loss"),
                            "unit": "L1", "preconditions": forgets, **common},
        # does GAPT tighten each task's cloud, or only push the means apart? (denominator of the separation)
        "forget_within_spread": {"treatment": col("gapt", "spread"), "baseline": col("baseline", "spread"),
                                 "unit": "sqrt(mean trace var)", "note": "within-task spread of the hidden "
                                 "units (the separation's denominator); the numerator is reported beside it",
                                 **common},
    }
    return {"title": "Catastrophic forgetting and representation separation", "stats": stats,
            "claims": claims, "scale": scale,
            "tables": [paths.table("runs").name, paths.table("decomposition").name],
            "mean_separation": {a: float(np.mean(col(a, "separation"))) for a in ("pretrained", *ARMS)}}


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers (per arm: separation and its parts, losses, MBE)."""
    from infoplane.experiments.presentation import stat_pm

    st = summary.get("stats", {})

    def m(arm: str, key: str) -> str:
        return stat_pm(st, arm, key)

    out = [f"{arm}: separation {m(arm, 'separation')} = between-task distance {m(arm, 'between')} / "
           f"within-task spread {m(arm, 'spread')}; mean-activation norm new task {m(arm, 'norm_new')}, "
           f"old task {m(arm, 'norm_old')}; old-task L1 {m(arm, 'old_loss')}, "
           f"new-task L1 {m(arm, 'new_loss')}; "
           f"new-task MBE {m(arm, 'mbe_new')} uncentered, {m(arm, 'mbe_new_centered')} centered; "
           f"selectivity {m(arm, 'selectivity')}; fraction of steps with the MBE term "
           f"{m(arm, 'compress_fraction')}." for arm in st]
    if st:
        out.append("The between-task distance and the spread do not change when all hidden states are "
                   "shifted by a common vector (centering); the uncentered MBE does, so it is shown "
                   "both ways.")
    return out


def decomposition_rows(runs: list[dict]) -> list[dict]:
    """One row per arm: mean and standard error over seeds of the separation's parts and the losses."""
    keys = ("separation", "between", "spread", "norm_new", "norm_old", "old_loss", "new_loss", "mbe_new",
            "mbe_new_centered", "mbe_old", "mbe_old_centered")
    out = []
    for arm in ("pretrained", *ARMS):
        rows = [r for r in runs if r["arm"] == arm]
        if not rows:
            continue
        row: dict = {"arm": arm, "n": len(rows)}
        for k in keys:
            s = summarize(float(r[k]) for r in rows)
            row[k], row[f"{k}_se"] = s["mean"], s["se"]
        out.append(row)
    return out


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Separation, its two parts, old-task loss and MBE per arm (dots = seeds), ``forgetting_runs.csv``."""
    from infoplane.experiments.presentation import pyplot, read_table, save_png, seed_dots

    runs = read_table(results, "forgetting_runs")
    if not runs:
        return []
    plt = pyplot()
    arms = [a for a in ("pretrained", "baseline", "static", "gapt") if any(r["arm"] == a for r in runs)]
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.4))
    seed_dots(axes[0, 0], runs, arms, "separation", "separation = between / spread")
    seed_dots(axes[0, 1], runs, arms, "between", "between-task distance ||mu_new - mu_old||")
    seed_dots(axes[0, 2], runs, arms, "spread", "within-task spread sqrt(mean tr var)")
    seed_dots(axes[1, 0], runs, arms, "old_loss", "L1 loss on the old task")
    seed_dots(axes[1, 1], runs, arms, "mbe_new", "new-task MBE, uncentered (nats)")
    seed_dots(axes[1, 2], runs, arms, "mbe_new_centered", "new-task MBE, centered (nats)")
    fig.tight_layout()
    return [(save_png(fig, figs / "forgetting.png"),
             "Conflicting tasks after fine-tuning on the new task: the separation ratio, its numerator "
             "(between-task distance) and denominator (within-task spread), the old-task loss, and the "
             "new task's MBE uncentered and centered (dots = seeds).")]
