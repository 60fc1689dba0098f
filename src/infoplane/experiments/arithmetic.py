"""Experiment 3: arithmetic multiplication, in- and out-of-distribution (Yu 2025; mod_gpt arithmetic runs).

Data ``<bos>a x b = c<eos>`` (character tokens, vocabulary 15, :mod:`infoplane.data.tasks`). Sized so that
the task is learnt in distribution on a CPU budget (the declared floor of the OOD claims; short trials at
1-2 x 1-2 digits, answers in the reference's order, stayed near 0.1 ID exact match): the first operand has
``train_digits`` digits (default 1-3), the second ``b_digits`` (default 1), operands are zero-padded to
``operand_width`` digits and the answer is written least significant first (``reverse_answer``; Lee et al.
2023, arXiv:2307.03381). The OOD test uses a longer first operand (default 4 digits).

Both arms train the same compact GPT for the same steps on the same batches (equal CE tokens; CE on all real
tokens, as the reference): ``baseline`` (CE only) and ``gapt`` (CE + lambda * MBE in compression phases chosen
by the :class:`~infoplane.train.phases.PhaseController`, one middle block per step: the references'
``rotate`` scheme). MBE is taken over real tokens only (padding rows removed, :mod:`.arithmetic_metrics`).
Model selection uses the ID validation masked CE only (never the test sets); the selected model is scored on
ID test and OOD test: masked CE over answer digits, raw and after temperature calibration on ID validation,
exact match (all answer digits and the closing ``<eos>`` are the argmax under teacher forcing, equivalent to
greedy decoding being correct), accuracy per answer digit (place value), and per-layer MBE, uncentered and
centered.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from infoplane.data.tasks import ArithmeticBatch, CharTokenizer, encode_arithmetic, make_arithmetic_splits
from infoplane.experiments.arithmetic_metrics import (
    answer_logits,
    calibrated_ce,
    digit_accuracy,
    fit_temperature,
    input_mask,
    masked_patch_mbe,
    pack_valid,
)
from infoplane.experiments.common import ExperimentPaths, Progress, seed_everything, summarize
from infoplane.io import atomic_write_csv
from infoplane.train.model import GPT, GPTConfig
from infoplane.train.objective import GaptObjective, ObjectiveConfig, ObjectiveTerms, single_step
from infoplane.train.phases import PhaseControllerConfig
from infoplane.train.schedule import lr_at

NAME = "arithmetic"
ARMS = ("baseline", "gapt")

__all__ = ["NAME", "ArithmeticConfig", "run", "evaluate_split", "lm_loss", "arm_step", "train_arm"]


@dataclass(frozen=True)
class ArithmeticConfig:
    """Sizes and hyper-parameters (mod_gpt arithmetic runs, scaled to CPU).

    Sized by short trials (one thread, baseline): ID exact match 0.70 (seed 0) and 0.26 (seed 1) at 1500
    steps; 0.87 (seed 1) and 0.45 (seed 2) at 2500; 0.91 (seed 2) at 3000 steps, about 95 s of CPU per run.
    The task is learnt abruptly and late, at a seed-dependent step. The demo tier's 1000 steps stay below the
    declared floor (about 0.2), so its OOD claims are "not testable" there.
    """

    seeds: tuple[int, ...] = (0, 1, 2)
    train_digits: tuple[int, int] = (1, 3)
    ood_digits: tuple[int, int] = (4, 4)
    b_digits: tuple[int, int] | None = (1, 1)
    operand_width: int = 3
    reverse_answer: bool = True
    n_train: int = 8000
    n_val: int = 500
    n_test: int = 500
    n_test_ood: int = 1000
    n_layer: int = 4
    n_head: int = 4
    d_model: int = 64
    steps: int = 3000
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 0.1
    warmup_steps: int = 50
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    eval_every: int = 100
    mbe_weight: float = 1.0
    patch_size: int = 8
    mbe_layers: str = "rotate"
    patience_mem: int = 50
    patience_comp: int = 30
    ema: float | None = 0.9
    id_exact_floor: float = 0.5  # declared: OOD claims need in-distribution exact match >= this

    @classmethod
    def quick(cls) -> ArithmeticConfig:
        return cls(seeds=(0, 1), steps=200, d_model=64, n_train=4000, n_val=300, n_test=300, n_test_ood=500,
                   eval_every=100, patience_mem=30, patience_comp=20)

    @classmethod
    def demo(cls) -> ArithmeticConfig:
        return cls(steps=1000)

    @classmethod
    def full(cls) -> ArithmeticConfig:
        return cls(seeds=tuple(range(8)))


def lm_loss(model: GPT, batch: ArithmeticBatch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Mean next-token CE over real target tokens (nats/token) and the block outputs at real positions only,
    each packed to ``[1, M, D]`` (:func:`~infoplane.experiments.arithmetic_metrics.pack_valid`)."""
    loss_mask, _, _ = batch.target_masks()
    targets = batch.ids[:, 1:].masked_fill(~loss_mask, -100)
    out = model(batch.ids[:, :-1], targets)
    return out.loss, pack_valid(out.hidden_states, input_mask(batch))


@torch.no_grad()
def evaluate_split(model: GPT, batch: ArithmeticBatch, chunk: int = 512) -> dict[str, float]:
    """Masked answer-digit CE (nats/token) and exact match (fraction of examples) under teacher forcing."""
    al = answer_logits(model, batch, chunk)
    return {"masked_ce": calibrated_ce(al.logits, al.targets),  # masked CE over answer tokens (mod_gpt)
            "exact_match": float(al.exact.float().mean()) if len(al.exact) else float("nan")}


def arm_step(model: GPT, opt: torch.optim.Optimizer, objective: GaptObjective, batch: ArithmeticBatch,
             step: int) -> tuple[ObjectiveTerms, list[dict], bool]:
    """One optimiser step of an arm: masked CE -> the GAPT step
    (:func:`infoplane.train.objective.single_step`, gradient norm clipped at 1)."""
    ce, hidden = lm_loss(model, batch)
    return single_step(objective, ce, hidden, opt, step=step, params=model.parameters(), grad_clip=1.0)


def score_model(model: GPT, data: dict[str, ArithmeticBatch], patch: int) -> tuple[dict, list[dict]]:
    """Test metrics of a trained model: raw and calibrated masked CE, exact match and per-digit accuracy on
    ``test_id`` / ``test_ood`` (temperature fitted on ``val_id``), and per-layer MBE of ``test_id``."""
    val = answer_logits(model, data["val_id"])
    temp = fit_temperature(val.logits, val.targets)  # one T per model, on ID validation only
    res: dict = {"temperature": temp}
    hidden: list = []
    for split in ("test_id", "test_ood"):
        al = answer_logits(model, data[split], hidden_out=hidden if split == "test_id" else None)
        res[f"{split}_masked_ce"] = calibrated_ce(al.logits, al.targets)
        res[f"{split}_masked_ce_cal"] = calibrated_ce(al.logits, al.targets, temp)
        res[f"{split}_exact"] = float(al.exact.float().mean())
        places = int(data[split].answer_mask.sum(1).max())
        for k, acc in enumerate(digit_accuracy(al, places)):
            res[f"{split}_digit{k}_acc"] = acc
    mask = input_mask(data["test_id"])
    layers = []
    n_layer = len(hidden[0])
    for i in range(n_layer):
        h = torch.cat([chunk[i] for chunk in hidden])
        layers.append({"layer": i, "mbe": masked_patch_mbe(h, mask, patch),
                       "mbe_centered": masked_patch_mbe(h, mask, patch, centered=True)})
    res["mbe_mean"] = sum(r["mbe"] for r in layers) / n_layer
    res["mbe_centered_mean"] = sum(r["mbe_centered"] for r in layers) / n_layer
    return res, layers


def train_arm(arm: str, cfg: ArithmeticConfig, seed: int, data: dict[str, ArithmeticBatch],
              log: Progress | None = None) -> tuple[dict, list[dict]]:
    """Train one arm; returns (final metrics of the ID-val-selected model, per-eval log rows); the per-layer
    MBE rows of the selected model are under the metrics' ``"layers"`` key."""
    if arm not in ARMS:
        raise ValueError(f"arm must be one of {ARMS}, got {arm!r}")
    tok = CharTokenizer()
    T = data["test_ood"].ids.shape[1] - 1
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=cfg.n_layer, n_head=cfg.n_head,
                          d_model=cfg.d_model, block_size=T, seed=seed))
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.95), weight_decay=cfg.weight_decay)
    objective = GaptObjective(
        ObjectiveConfig(kind="gapt" if arm == "gapt" else "ce", mbe_weight=cfg.mbe_weight,
                        patch_size=cfg.patch_size, layers=cfg.mbe_layers, log_mbe=False),
        controller_config=PhaseControllerConfig(rule="relative", patience_mem=cfg.patience_mem,
                                                patience_comp=cfg.patience_comp, ema=cfg.ema))
    gen = torch.Generator().manual_seed(seed + 7)  # same batch order for both arms of a seed
    train = data["train"]
    n_comp = 0
    best = (float("inf"), None, -1)
    rows = []
    for step in range(cfg.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg)
        idx = torch.randint(0, len(train), (cfg.batch_size,), generator=gen)
        batch = ArithmeticBatch(train.ids[idx], train.valid[idx], train.answer_mask[idx], train.eos_pos[idx],
                                [train.pairs[i] for i in idx.tolist()], train.reverse_answer)
        terms, _, _ = arm_step(model, opt, objective, batch, step)
        n_comp += int(terms.penalised)
        if (step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps:
            val = evaluate_split(model, data["val_id"])
            rows.append({"seed": seed, "arm": arm, "step": step + 1, "train_ce": terms.base,
                         "val_masked_ce": val["masked_ce"], "val_exact": val["exact_match"],
                         "phase": objective.phase})
            if val["masked_ce"] < best[0]:  # model selection on ID validation only
                best = (val["masked_ce"], copy.deepcopy(model.state_dict()), step + 1)
    model.load_state_dict(best[1])
    scores, layers = score_model(model, data, cfg.patch_size)
    res = {"seed": seed, "arm": arm, "selected_step": best[2], "val_masked_ce": best[0],
           "compress_fraction": n_comp / cfg.steps, "n_switches": len(objective.events), **scores,
           "layers": [{"seed": seed, "arm": arm, **r} for r in layers]}
    if log:
        log(f"seed {seed} {arm}: ID exact {res['test_id_exact']:.3f}, OOD CE {res['test_ood_masked_ce']:.3f} "
            f"(calibrated {res['test_ood_masked_ce_cal']:.3f}, T {res['temperature']:.2f})")
    return res, rows


def make_data(cfg: ArithmeticConfig, seed: int) -> dict[str, ArithmeticBatch]:
    """The four encoded splits of one seed, padded to one length (the longest OOD or train example)."""
    sp = make_arithmetic_splits(cfg.n_train, cfg.n_val, cfg.n_test, tuple(cfg.train_digits),
                                tuple(cfg.ood_digits), seed=seed, n_test_ood=cfg.n_test_ood,
                                b_digits=None if cfg.b_digits is None else tuple(cfg.b_digits))
    fmt = {"reverse_answer": cfg.reverse_answer, "operand_width": cfg.operand_width}
    length = max(len(encode_arithmetic(p, **fmt).ids[0]) for p in (sp.test_ood, sp.train))
    return {k: encode_arithmetic(getattr(sp, k), length=length, **fmt)
            for k in ("train", "val_id", "test_id", "test_ood")}


def run(cfg: ArithmeticConfig, paths: ExperimentPaths, log: Progress) -> dict:
    """All seeds and arms; writes ``arithmetic_{runs,curves,layers}.csv``."""
    results, curves, layers = [], [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny model and sequences: one thread is fastest and leaves a core free
    try:
        for seed in cfg.seeds:
            seed_everything(seed)
            data = make_data(cfg, seed)
            for arm in ARMS:
                res, rows = train_arm(arm, cfg, seed, data, log)
                layers.extend(res.pop("layers"))
                results.append(res)
                curves.extend(rows)
    finally:
        torch.set_num_threads(threads)
    atomic_write_csv(paths.table("runs"), results)
    atomic_write_csv(paths.table("curves"), curves)
    atomic_write_csv(paths.table("layers"), layers)

    def col(arm: str, key: str) -> list[float]:
        return [r[key] for r in results if r["arm"] == arm]

    keys = ("test_id_masked_ce", "test_ood_masked_ce", "test_ood_masked_ce_cal", "test_id_masked_ce_cal",
            "temperature", "test_id_exact", "test_ood_exact", "val_masked_ce", "compress_fraction",
            "mbe_mean", "mbe_centered_mean")
    digit_keys = sorted(k for k in results[0] if "_digit" in k) if results else []
    stats = {arm: {k: summarize(col(arm, k)) for k in (*keys, *digit_keys)} for arm in ARMS}
    b = f" x {cfg.b_digits[0]}-{cfg.b_digits[1]}" if cfg.b_digits is not None else ""
    scale = (f"GPT {cfg.n_layer}x{cfg.d_model}, {cfg.steps} steps x {cfg.batch_size} examples, train "
             f"{cfg.train_digits[0]}-{cfg.train_digits[1]}{b} digits, "
             f"OOD {cfg.ood_digits[0]}-{cfg.ood_digits[1]}{b}, "
             f"{'reversed answers, ' if cfg.reverse_answer else ''}"
             f"{len(cfg.seeds)} seeds")
    # declared precondition: an OOD claim is only testable when the task is learnt in distribution
    base_id = col("baseline", "test_id_exact")
    id_exact = sum(base_id) / len(base_id) if base_id else float("nan")
    pre = [{"name": "id_exact_match_floor", "passed": bool(id_exact >= cfg.id_exact_floor),
            "detail": f"baseline ID exact match {id_exact:.3f} vs declared floor {cfg.id_exact_floor:g}"}]
    common = {"paired": True, "seeds": [r["seed"] for r in results if r["arm"] == "gapt"],
              "preconditions": pre, "replicates": "independent training seeds", "scale": scale,
              "treatment_label": "GAPT", "baseline_label": "baseline"}
    claims = {
        "arith_ood": {"treatment": col("gapt", "test_ood_masked_ce_cal"),
                      "baseline": col("baseline", "test_ood_masked_ce_cal"), "unit": "nats",
                      "note": "OOD masked answer CE after temperature scaling fitted on ID validation per "
                              "model (raw OOD CE in the runs table)", **common},
        "arith_ood_exact": {"treatment": col("gapt", "test_ood_exact"),
                            "baseline": col("baseline", "test_ood_exact"), "unit": "fraction", **common},
    }
    return {"title": "Arithmetic multiplication: ID vs OOD", "stats": stats, "claims": claims, "scale": scale,
            "tables": [paths.table(t).name for t in ("runs", "curves", "layers")]}


def digit_keys(row: dict, split: str) -> list[str]:
    """The per-digit accuracy keys ``<split>_digit<k>_acc`` of a row, by place value k."""
    prefix = f"{split}_digit"
    keys = [k for k in row if k.startswith(prefix) and k.endswith("_acc")]
    return sorted(keys, key=lambda k: int(k[len(prefix):-len("_acc")]))


def describe(summary: dict) -> list[str]:
    """Neutral sentences from the summary's numbers (per arm: ID / OOD masked CE, calibration, digits)."""
    import math

    from infoplane.experiments.presentation import fmt, stat_pm

    st = summary.get("stats", {})
    if not st:
        return []

    def m(arm: str, key: str) -> str:
        return stat_pm(st, arm, key)

    def digits(arm: str, split: str) -> str:
        return ", ".join(fmt(st[arm][k].get("mean"), 3) for k in digit_keys(st[arm], split))

    out = [f"{arm}: ID test masked CE {m(arm, 'test_id_masked_ce')}, exact {m(arm, 'test_id_exact')}; "
           f"OOD masked CE {m(arm, 'test_ood_masked_ce')} raw, {m(arm, 'test_ood_masked_ce_cal')} at the "
           f"temperature fitted on ID validation (T {m(arm, 'temperature')}), "
           f"OOD exact {m(arm, 'test_ood_exact')}; "
           f"accuracy per answer digit (units first) ID [{digits(arm, 'test_id')}], OOD "
           f"[{digits(arm, 'test_ood')}]; layer-mean MBE of the ID test answers' real tokens "
           f"{m(arm, 'mbe_mean')} uncentered, {m(arm, 'mbe_centered_mean')} centered "
           f"(models selected on ID validation CE)." for arm in st]
    ood_ce = [st[a].get("test_ood_masked_ce", {}).get("mean") for a in st]
    ood_ex = [st[a].get("test_ood_exact", {}).get("mean") for a in st]
    # uniform guess over 10 digits: cross-entropy ln 10 nats per answer token (chance level)
    out.append("Reference point: a uniform guess over the 10 digits costs ln 10 = 2.303 nats per "
               "answer token.")
    if all(isinstance(c, float) and c > math.log(10) for c in ood_ce) and all(e == 0 for e in ood_ex):
        out.append("Every arm's raw OOD masked CE exceeds ln 10 at zero OOD exact match: the OOD answers "
                   "are confidently wrong, and a lower raw OOD CE means less confident errors, not correct "
                   "answers; the calibrated CE removes the part of that difference a single temperature "
                   "explains.")
    floor = summary.get("config", {}).get("id_exact_floor", 0.5)
    ex = {a: st[a].get("test_id_exact", {}).get("mean") for a in st}
    below = [a for a, e in ex.items() if isinstance(e, float) and e < floor]
    if below and "baseline" not in below:
        out.append(f"Caveat: the floor (ID exact match >= {floor:g}) is declared on the baseline, which "
                   f"passes it; {', '.join(f'{a} ({fmt(ex[a], 3)})' for a in below)} does not. A model that "
                   "fits the training distribution worse is also less confident on longer operands, so its "
                   "lower OOD CE is not by itself evidence of better generalisation: read it beside OOD "
                   "exact match and the per-digit accuracy.")
    return out


def figures(results: Path, figs: Path) -> list[tuple[Path, str]]:
    """ID validation curve, test metrics, per-digit accuracy and per-layer MBE per arm
    (``arithmetic_{curves,runs,layers}.csv``)."""
    from infoplane.experiments.presentation import (
        ARM_COLORS,
        as_float,
        mean_curve,
        pyplot,
        read_table,
        save_png,
        seed_dots,
    )

    curves, runs = read_table(results, "arithmetic_curves"), read_table(results, "arithmetic_runs")
    layers = read_table(results, "arithmetic_layers")
    if not runs:
        return []
    plt = pyplot()
    arms = [a for a in ("baseline", "gapt") if any(r["arm"] == a for r in runs)]
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.3))
    for arm in arms:
        s, v = mean_curve(curves, arm, "val_masked_ce")
        axes[0].plot(s, v, color=ARM_COLORS[arm], label=arm)
    axes[0].set_title("ID validation masked answer CE", fontsize=9)
    axes[0].set_xlabel("step")
    axes[0].legend(fontsize=7)
    seed_dots(axes[1], runs, arms, "test_id_exact", "ID test exact match")
    seed_dots(axes[2], runs, arms, "test_ood_masked_ce", "OOD test masked CE, raw")
    seed_dots(axes[3], runs, arms, "test_ood_masked_ce_cal", "OOD test masked CE, calibrated on ID val")
    out = [(save_png(fig, figs / "arithmetic.png"),
            "Multiplication: ID validation curve (model selection), ID exact match, and OOD masked CE raw "
            "and after one temperature per model fitted on ID validation (dots = seeds).")]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.3))
    for ax, split in zip(axes[:2], ("test_id", "test_ood")):
        keys = digit_keys(runs[0], split)
        for arm in arms:
            rows = [r for r in runs if r["arm"] == arm]
            ax.plot(range(len(keys)), [np.nanmean([as_float(r[k]) for r in rows]) for k in keys], "o-",
                    color=ARM_COLORS[arm], label=arm)
        ax.set_xlabel("answer digit (place value, 0 = units)")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{'ID' if split == 'test_id' else 'OOD'} test: accuracy per answer digit", fontsize=9)
        ax.legend(fontsize=7)
    for arm in arms:
        for key, style in (("mbe", "o-"), ("mbe_centered", "s--")):
            mine = [r for r in layers if r["arm"] == arm]
            n = sorted({int(as_float(r["layer"])) for r in mine})
            vals = [np.mean([as_float(r[key]) for r in mine if int(as_float(r["layer"])) == i]) for i in n]
            axes[2].plot(n, vals, style, color=ARM_COLORS[arm], label=f"{arm}, {key.replace('_', ' ')}")
    axes[2].set_xlabel("block")
    axes[2].set_title("MBE of real tokens (ID test), uncentered and centered", fontsize=9)
    axes[2].legend(fontsize=7)
    out.append((save_png(fig, figs / "arithmetic_digits.png"),
                "Multiplication: teacher-forced accuracy at each answer digit (ID and OOD test, seed means) "
                "and per-block MBE of the ID test sequences' real tokens, uncentered and centered."))
    return out
