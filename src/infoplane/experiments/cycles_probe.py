"""The probe of experiment 1 (:mod:`infoplane.experiments.cycles`): K fixed held-out probe batches and the
trainer callback that, every ``every`` steps, records the gradient cosines on them (mean and standard error
over the K batches, :func:`infoplane.train.alignment.probe_alignment`) and the held-out CE and MBE
(uncentered and centered, per layer) at the same point."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = ["probe_batches", "AlignmentProbe"]


def probe_batches(
    tokens: torch.Tensor, k: int, batch_size: int, block_size: int, seed: int
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """K fixed ``(x [B, T], y [B, T])`` batches of non-overlapping windows of ``tokens`` ([N]), chosen once
    with ``seed`` (a seeded permutation of the window starts)."""
    n_win = (len(tokens) - 1) // block_size
    if k < 1 or batch_size < 1 or n_win < k * batch_size:
        raise ValueError(
            f"need {k} x {batch_size} windows of {block_size + 1} tokens, the held-out tokens hold {n_win}"
        )
    g = torch.Generator().manual_seed(seed)
    starts = torch.randperm(n_win, generator=g)[: k * batch_size] * block_size
    idx = starts.view(k, batch_size, 1) + torch.arange(block_size + 1)
    w = tokens[idx]
    return [(w[i, :, :-1].contiguous(), w[i, :, 1:].contiguous()) for i in range(k)]


class AlignmentProbe:
    """Trainer callback: every ``every`` steps, cosines on the K probe batches and held-out CE / MBE."""

    def __init__(
        self, probes: list, heldout: list, every: int, patch_size: int, control_per_layer: bool = False
    ) -> None:
        self.probes, self.heldout, self.every, self.patch = probes, heldout, every, patch_size
        self.control_per_layer = control_per_layer
        self.rows: list[dict[str, Any]] = []
        self.seconds = 0.0  # wall time spent in the probe (not counted in the trainer's own clock)
        self.batch_rows: list[dict[str, Any]] = []

    def _heldout(self, model: torch.nn.Module) -> dict[str, float]:
        from infoplane.estimators import patch_matrix_entropy

        def mbe(h: torch.Tensor, centered: bool) -> float:
            # patch MBE (mod_gpt src/mbe.py); centered = per-patch mean row removed (diagnostic)
            return float(patch_matrix_entropy(h, self.patch, "drop_start", centered=centered, validate=False))

        was = model.training
        model.eval()
        ce, unc, cen = [], [], []
        with torch.no_grad():
            for x, y in self.heldout:
                out = model(x, y)
                ce.append(float(out.loss))
                unc.append([mbe(h, False) for h in out.hidden_states])
                cen.append([mbe(h, True) for h in out.hidden_states])
        model.train(was)
        u, c = np.mean(unc, axis=0), np.mean(cen, axis=0)
        row = {"heldout_ce": float(np.mean(ce)), "mbe_mean": float(u.mean()), "mbe_c_mean": float(c.mean())}
        row.update({f"mbe_{i}": float(v) for i, v in enumerate(u)})
        row.update({f"mbe_c_{i}": float(v) for i, v in enumerate(c)})
        return row

    def __call__(self, trainer: Any, rec: dict) -> None:
        step = int(rec["step"])
        if step % self.every:
            return
        import time

        from infoplane.train.alignment import mean_se, probe_alignment

        t0 = time.perf_counter()
        res = probe_alignment(trainer.model, self.probes, self.patch, self.control_per_layer)
        trainer.model.zero_grad(set_to_none=True)
        row: dict[str, Any] = {"step": step, "probe_ce": float(res["ce"].mean())}
        n_layer = res["mbe_layer"].shape[1]
        for fam in ("mbe", "frob"):
            m, s = mean_se(res[fam])
            row[f"cos_{fam}"], row[f"cos_{fam}_se"] = float(m), float(s)
            if f"{fam}_layer" not in res:
                continue
            ml, sl = mean_se(res[f"{fam}_layer"])
            for i in range(n_layer):
                row[f"cos_{fam}_{i}"], row[f"cos_{fam}_{i}_se"] = float(ml[i]), float(sl[i])
        row.update(self._heldout(trainer.model))
        self.rows.append(row)
        for k in range(len(self.probes)):
            br = {
                "step": step,
                "batch": k,
                "cos_mbe": float(res["mbe"][k]),
                "cos_frob": float(res["frob"][k]),
            }
            for fam in ("mbe", "frob"):
                for i in range(n_layer if f"{fam}_layer" in res else 0):
                    br[f"cos_{fam}_{i}"] = float(res[f"{fam}_layer"][k, i])
            self.batch_rows.append(br)
        rec["align_probe"] = {"cos_mbe": row["cos_mbe"], "cos_frob": row["cos_frob"]}
        self.seconds += time.perf_counter() - t0
