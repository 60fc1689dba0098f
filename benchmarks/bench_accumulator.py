"""Benchmark: infoplane SoftEntropyAccumulator vs soft-entropy 0.1.5 vs the matmul+softmax floor.

Workload (default): 31 layers x 4096 tokens x d=576 x m=100 bins, 6 label sets (input/output uni-, bi-,
trigrams of Zipf-distributed token ids, vocab 49152), one batch. All three run on the same data, with the
same reference points W and temperature, side by side in one run; the numbers are cross-checked.

* ours: ``prepare_labels`` once + one ``update(z [L, N, d])`` (+ ``compute()`` timed separately).
* reference: one ``soft_entropy.SoftEntropyAccumulator`` per layer (as its ``LLMInferrer`` does), with
  its ``.w``/``.temp`` replaced by ours; if it is slow, only the first ``--ref-layers`` layers are timed
  and the time is scaled to all layers (printed as such).
* floor: ``softmax(z @ (W^T/eps))`` for all layers (the unavoidable matmul + softmax), best of the batched
  and per-layer forms.

Run: ``python benchmarks/bench_accumulator.py [--tokens 4096 --layers 31 --dim 576 --ref-layers 4]``.
Timings are wall-clock best-of-``--repeats`` on whatever the machine is doing; ratios are what matter.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from infoplane.estimators import SoftEntropyAccumulator, calibrate_temperature, reference_points


def make_workload(n_layers: int, n_tokens: int, dim: int, vocab: int, seed: int):
    """Zipf token stream -> n-gram labels and layered representations that depend on the tokens."""
    rng = np.random.default_rng(seed)
    max_n = 3
    toks = rng.zipf(1.2, size=n_tokens + 2 * max_n) % vocab  # Zipf ids folded into the vocabulary
    labels = {}
    pos = np.arange(max_n - 1, max_n - 1 + n_tokens)  # positions with full left and right context
    for n in range(1, max_n + 1):
        inp = np.zeros(n_tokens, dtype=np.int64)
        out = np.zeros(n_tokens, dtype=np.int64)
        for k in range(n):  # id = t0 V^{n-1} + ... + t_{n-1} (reference doc 2, n-gram labels)
            inp = inp * vocab + toks[pos - n + 1 + k]
            out = out * vocab + toks[pos + 1 + k]
        labels[f"input_{n}"] = inp
        labels[f"output_{n}"] = out
    uniq, inv = np.unique(toks[pos], return_inverse=True)
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(uniq), dim, generator=g)
    z = torch.empty(n_layers, n_tokens, dim)
    inv_t = torch.from_numpy(inv)
    for layer in range(n_layers):
        mix = torch.randn(dim, dim, generator=g) / math.sqrt(dim) if layer else torch.eye(dim)
        z[layer] = emb[inv_t] @ mix + 0.5 * torch.randn(n_tokens, dim, generator=g)
    return z, labels


def best_of(fn, repeats: int) -> tuple[float, object]:
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=31)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--bins", type=int, default=100)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--ref-layers", type=int, default=3, help="layers timed for soft-entropy (scaled)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import soft_entropy

    L, N, d, m = args.layers, args.tokens, args.dim, args.bins
    print(
        f"workload: L={L} layers x N={N} tokens x d={d}, m={m} bins, 6 label sets, "
        f"torch {torch.__version__}, threads={torch.get_num_threads()}"
    )
    z, labels = make_workload(L, N, d, args.vocab, args.seed)
    for k, v in labels.items():
        print(f"  {k}: {len(np.unique(v))} distinct labels in the batch")
    w = reference_points(m, d, seed=args.seed)
    eps = calibrate_temperature(m, d)
    labels_t = {k: torch.from_numpy(v) for k, v in labels.items()}

    # --- ours
    def run_ours():
        acc = SoftEntropyAccumulator(d, temperature=eps, reference_points=w, n_layers=L)
        acc.update(z, acc.prepare_labels(labels_t))
        return acc

    t_ours, acc = best_of(run_ours, args.repeats)
    t_compute, res = best_of(acc.compute, 1)

    # --- floor: matmul + softmax, nothing else
    wt = (w.T / eps).to(torch.float32).contiguous()

    def floor_batched():
        return torch.softmax(torch.matmul(z, wt), dim=-1)

    def floor_loop():
        return [torch.softmax(z[layer] @ wt, dim=-1) for layer in range(L)]

    t_floor_b, _ = best_of(floor_batched, args.repeats)
    t_floor_l, _ = best_of(floor_loop, args.repeats)
    t_floor = min(t_floor_b, t_floor_l)

    # --- reference: one accumulator per layer, same W and temperature, timed on the first ref_layers
    n_ref = min(L, args.ref_layers)
    ref_accs = []
    t0 = time.perf_counter()
    for layer in range(n_ref):
        ra = soft_entropy.SoftEntropyAccumulator(d=d, n_bins=m, seed=args.seed, backend="torch")
        ra.w = w.to(torch.float32)
        ra.temp = eps
        ra.update(z[layer], labels=labels)
        ref_accs.append(ra)
    t_ref_part = time.perf_counter() - t0
    t_ref = t_ref_part * L / n_ref
    t0 = time.perf_counter()
    ref_res = [ra.results() for ra in ref_accs]
    t_ref_compute = (time.perf_counter() - t0) * L / n_ref

    # --- cross-check
    worst = 0.0
    for layer, rr in enumerate(ref_res):
        worst = max(worst, abs(rr["H(Z)"] - res.entropy[layer]))
        for name in labels:
            worst = max(worst, abs(rr[f"I(X;Z)/{name}"] - res.mi[name][layer]))
    print(
        f"\nnumbers agree with soft-entropy on layers 0..{n_ref - 1}: max |diff| of H and 6 MIs = {worst:.2e}"
    )
    print(
        f"example layer 0: H={res.entropy[0]:.4f} "
        + " ".join(f"I({k})={res.mi[k][0]:.4f}" for k in sorted(labels))
    )
    print(f"state size (ours): {acc.state_nbytes() / 2**20:.1f} MiB")

    print("\n                          seconds   (per batch of L x N representations)")
    print(f"floor (matmul+softmax)    {t_floor:8.3f}   (batched {t_floor_b:.3f}, per-layer {t_floor_l:.3f})")
    print(f"ours  update              {t_ours:8.3f}   (prepare_labels + update, best of {args.repeats})")
    print(f"ours  compute             {t_compute:8.3f}   (once at the end)")
    scaled = "" if n_ref == L else f"  [measured {t_ref_part:.2f} s on {n_ref} layers, x{L / n_ref:.1f}]"
    print(f"soft-entropy update       {t_ref:8.3f}{scaled}")
    print(f"soft-entropy results      {t_ref_compute:8.3f}")
    print(f"\nspeedup vs soft-entropy (update): {t_ref / t_ours:6.1f}x   (target >= 15x)")
    print(f"ours / floor:                     {t_ours / t_floor:6.2f}    (target <= 1.3)")


if __name__ == "__main__":
    main()
