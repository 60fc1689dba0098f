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
(mod_gpt ``forget.py``), L1 loss on the old task (interference) and on the new task, selectivity (share of
units with ``|(m1 - m2)/(m1 + m2)| > 0.5``).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from infoplane.data.tasks import make_conflict_task, make_conflict_teacher
from infoplane.estimators import patch_matrix_entropy
from infoplane.experiments.common import ExperimentPaths, Progress, seed_everything, summarize
from infoplane.io import atomic_write_csv
from infoplane.train.objective import GaptObjective, ObjectiveConfig, single_step
from infoplane.train.phases import PhaseControllerConfig

NAME = "forgetting"
ARMS = ("baseline", "static", "gapt")

__all__ = ["NAME", "ForgettingConfig", "run", "separation", "selectivity", "train_arm"]


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


def separation(h_pos: torch.Tensor, h_neg: torch.Tensor) -> float:
    """||mu_pos - mu_neg|| / sqrt((tr Var_pos + tr Var_neg) / 2) of ``[N, H]`` activations (forget.py)."""
    mu_p, mu_n = h_pos.mean(0), h_neg.mean(0)
    tv = 0.5 * (h_pos.var(0, unbiased=True).sum() + h_neg.var(0, unbiased=True).sum())
    return float((mu_p - mu_n).norm() / tv.clamp_min(1e-12).sqrt())


def selectivity(h_pos: torch.Tensor, h_neg: torch.Tensor, threshold: float = 0.5) -> float:
    """Share of units with |(m1 - m2) / (m1 + m2)| > threshold (m = mean activation; forget.py)."""
    m1, m2 = h_pos.mean(0), h_neg.mean(0)
    denom = (m1 + m2).abs().clamp_min(1e-12)
    return float((((m1 - m2).abs() / denom) > threshold).float().mean())


def _batches(x: torch.Tensor, y: torch.Tensor, batch: int, steps: int, gen: torch.Generator):
    n = x.shape[0]
    for _ in range(steps):
        idx = torch.randint(0, n, (batch,), generator=gen)
        yield x[idx], y[idx]


def _mbe(h: torch.Tensor, patch: int) -> torch.Tensor:
    # MBE across samples: the batch is one sequence of B samples, patches of `patch` (mod_gpt ``forget.py``)
    return patch_matrix_entropy(h.unsqueeze(0), patch_size=patch, remainder="drop_start")


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
        terms, _, _ = single_step(objective, l1, [h.unsqueeze(0)], opt, step=step)  # the GAPT step
        n_comp += int(terms.penalised)
    return {"compress_fraction": n_comp / max(cfg.finetune_steps, 1), "n_switches": len(objective.events)}


@torch.no_grad()
def _evaluate(student: Student, data: dict[str, tuple[torch.Tensor, torch.Tensor]],
              patch: int) -> dict[str, float]:
    (xp, yp), (xn, yn) = data["positive"], data["negative"]
    pp, hp = student(xp)
    pn, hn = student(xn)
    return {"separation": separation(hp, hn), "selectivity": selectivity(hp, hn),
            "new_loss": float((pp - yp).abs().mean()), "old_loss": float((pn - yn).abs().mean()),
            "mbe_new": float(_mbe(hp[: (hp.shape[0] // patch) * patch], patch)),
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

    def col(arm: str, key: str) -> list[float]:
        return [r[key] for r in rows if r["arm"] == arm]

    metrics = ("separation", "old_loss", "new_loss", "selectivity", "mbe_new", "compress_fraction")
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
    }
    return {"title": "Catastrophic forgetting and representation separation", "stats": stats,
            "claims": claims, "tables": [paths.table("runs").name], "scale": scale,
            "mean_separation": {a: float(np.mean(col(a, "separation"))) for a in ("pretrained", *ARMS)}}


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers (per arm: separation, losses, selectivity)."""
    from infoplane.experiments.presentation import stat_pm

    st = summary.get("stats", {})

    def m(arm: str, key: str) -> str:
        return stat_pm(st, arm, key)

    return [f"{arm}: separation {m(arm, 'separation')}, old-task L1 {m(arm, 'old_loss')}, "
            f"new-task L1 {m(arm, 'new_loss')}, selectivity {m(arm, 'selectivity')}, "
            f"fraction of steps with the MBE term {m(arm, 'compress_fraction')}." for arm in st]


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """Separation and old/new-task losses per arm (dots = seeds) from ``forgetting_runs.csv``."""
    from infoplane.experiments.presentation import pyplot, read_table, save_png, seed_dots

    runs = read_table(results, "forgetting_runs")
    if not runs:
        return []
    plt = pyplot()
    arms = [a for a in ("pretrained", "baseline", "static", "gapt") if any(r["arm"] == a for r in runs)]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.3))
    seed_dots(axes[0], runs, arms, "separation", "separation of hidden representations")
    seed_dots(axes[1], runs, arms, "old_loss", "L1 loss on the old task")
    seed_dots(axes[2], runs, arms, "new_loss", "L1 loss on the new task")
    return [(save_png(fig, figs / "forgetting.png"),
             "Conflicting tasks: separation ratio and losses after fine-tuning on the new task "
             "(dots = seeds).")]
