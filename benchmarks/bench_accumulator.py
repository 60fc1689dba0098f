"""Benchmark: infoplane SoftEntropyAccumulator vs soft-entropy 0.1.5 vs the matmul+softmax floor.

Workload (default): 31 layers x 4096 tokens x d=576 x m=100 bins, 6 label sets (input/output uni-, bi-,
trigrams of Zipf-distributed token ids, vocab 49152), one batch. All three run on the same data, with the
same reference points W and temperature, side by side in one run; the numbers are cross-checked.

* ours: ``prepare_labels`` once + one ``update(z [L, N, d])`` (+ ``compute()`` timed separately); steady
  (the same accumulator again) and cold (a fresh accumulator each time: its ~500 MiB of label rows and
  scratch are written for the first time; with and without the huge pages of ``estimators.hostmem``).
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
import os
import time

import numpy as np
import torch

from infoplane.estimators import SoftEntropyAccumulator, calibrate_temperature, hostmem, reference_points
from infoplane.estimators.hostmem import huge_pages_enabled


def ngram_labels(toks: np.ndarray, n_tokens: int, vocab: int, max_n: int = 3) -> dict[str, np.ndarray]:
    """input_n / output_n labels (n = 1..max_n) of the positions with full left and right context."""
    labels = {}
    pos = np.arange(max_n - 1, max_n - 1 + n_tokens)  # positions with full left and right context
    for n in range(1, max_n + 1):
        inp = np.zeros(n_tokens, dtype=np.int64)
        out = np.zeros(n_tokens, dtype=np.int64)
        for k in range(n):  # id = t0 V^{n-1} + ... + t_{n-1} (soft-entropy, llm.py, _encode_ngram)
            inp = inp * vocab + toks[pos - n + 1 + k]
            out = out * vocab + toks[pos + 1 + k]
        labels[f"input_{n}"] = inp
        labels[f"output_{n}"] = out
    return labels


def make_workload(n_layers: int, n_tokens: int, dim: int, vocab: int, seed: int):
    """Zipf token stream -> n-gram labels and layered representations that depend on the tokens."""
    rng = np.random.default_rng(seed)
    max_n = 3
    toks = rng.zipf(1.2, size=n_tokens + 2 * max_n) % vocab  # Zipf ids folded into the vocabulary
    labels = ngram_labels(toks, n_tokens, vocab, max_n)
    pos = np.arange(max_n - 1, max_n - 1 + n_tokens)
    uniq, inv = np.unique(toks[pos], return_inverse=True)
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(len(uniq), dim, generator=g)
    z = torch.empty(n_layers, n_tokens, dim)
    inv_t = torch.from_numpy(inv)
    for layer in range(n_layers):
        mix = torch.randn(dim, dim, generator=g) / math.sqrt(dim) if layer else torch.eye(dim)
        z[layer] = emb[inv_t] @ mix + 0.5 * torch.randn(n_tokens, dim, generator=g)
    return z, labels


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=31)
    ap.add_argument("--tokens", type=int, default=4096)
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--bins", type=int, default=100)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--ref-layers", type=int, default=3, help="layers timed for soft-entropy (then scaled)")
    ap.add_argument("--ref-repeats", type=int, default=3, help="repeats of the soft-entropy timing (median)")
    ap.add_argument("--repeats", type=int, default=11, help="interleaved repeats of ours and the floor")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    import soft_entropy

    L, N, d, m = args.layers, args.tokens, args.dim, args.bins
    print(
        f"workload: L={L} layers x N={N} tokens x d={d}, m={m} bins, 6 label sets; "
        f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads, "
        f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"
    )
    z, labels = make_workload(L, N, d, args.vocab, args.seed)
    for k, v in labels.items():
        print(f"  {k}: {len(np.unique(v))} distinct labels in the batch")
    w = reference_points(m, d, seed=args.seed)
    eps = calibrate_temperature(m, d)
    labels_t = {k: torch.from_numpy(v) for k, v in labels.items()}

    # --- ours. cold = fresh accumulator (allocates label rows and scratch); steady = same accumulator
    # again (rows and scratch exist, as for every batch after the first in a stream whose labels repeat)
    def new_acc():
        return SoftEntropyAccumulator(d, temperature=eps, reference_points=w, n_layers=L)

    acc = new_acc()
    acc_pool = SoftEntropyAccumulator(d, temperature=eps, reference_points=w, n_layers=L, cpu_threads=None)

    held: list = []

    def ours_cold():  # construct + prepare + update; the previous fresh accumulator is freed untimed
        a = new_acc()
        a.update(z, a.prepare_labels(labels_t))
        held.append(a)

    def ours_cold_teardown():  # the same, plus freeing it (its label rows and scratch go back to the OS)
        a = new_acc()
        a.update(z, a.prepare_labels(labels_t))
        del a

    def ours_cold_new_mappings():  # ours_cold after hostmem.release() (untimed): no idle huge pages to reuse
        ours_cold()

    def ours_cold_small_pages():  # ours_cold with the label rows and scratch in 4 KiB pages (no THP)
        os.environ["INFOPLANE_HUGE_PAGES"] = "0"
        try:
            ours_cold()
        finally:
            os.environ.pop("INFOPLANE_HUGE_PAGES")

    def ours_steady():
        acc.update(z, acc.prepare_labels(labels_t))

    def ours_steady_pool():  # cpu_threads=None: torch's thread pool for the memory-bound part too
        acc_pool.update(z, acc_pool.prepare_labels(labels_t))

    def ours_layerwise():  # as forward hooks would: labels mapped once, one update per layer
        pl = acc.prepare_labels(labels_t)
        for layer in range(L):
            acc.update(z[layer], pl, layer=layer)

    # --- floor: matmul + softmax and nothing else (three forms; the fastest counts)
    wt = (w.T / eps).to(torch.float32).contiguous()
    buf = torch.empty(L, N, m)

    def floor_batched():
        torch.softmax(torch.matmul(z, wt), dim=-1)

    def floor_loop():
        for layer in range(L):
            torch.softmax(z[layer] @ wt, dim=-1)

    def floor_prealloc():  # preallocated output, in-place softmax: no allocation at all
        torch.matmul(z, wt, out=buf)
        buf.sub_(buf.amax(-1, keepdim=True)).exp_()
        buf.div_(buf.sum(-1, keepdim=True))

    # stream: a fresh accumulator fed 6 batches with different token streams (label rows keep growing);
    # the mean time of batches 2..6 (the representations are reused, only the labels change).
    # "stream_prepass": the same with labels that occur once in the whole stream marked -1 (singletons,
    # no rows), as a label pre-pass over the data does
    stream_rng = np.random.default_rng(args.seed + 1)
    stream_np = [ngram_labels(stream_rng.zipf(1.2, size=N + 6) % args.vocab, N, args.vocab) for _ in range(6)]
    stream_labels = [{k: torch.from_numpy(v) for k, v in lab.items()} for lab in stream_np]
    stream_pp = [{} for _ in stream_np]
    for k in stream_np[0]:
        vals, counts = np.unique(np.concatenate([lab[k] for lab in stream_np]), return_counts=True)
        once = vals[counts == 1]
        for i, lab in enumerate(stream_np):
            stream_pp[i][k] = torch.from_numpy(np.where(np.isin(lab[k], once), -1, lab[k]))
    pp_mass = np.mean([float((v < 0).float().mean()) for lab in stream_pp for v in lab.values()])

    def stream_mean(batches):
        a = new_acc()
        a.update(z, a.prepare_labels(batches[0]))
        t0 = time.perf_counter()
        for lab in batches[1:]:
            a.update(z, a.prepare_labels(lab))
        return (time.perf_counter() - t0) / (len(batches) - 1), a.state_nbytes()

    runs: dict[str, list[float]] = {
        k: []
        for k in (
            "ours_steady",
            "ours_layerwise",
            "ours_steady_pool",
            "ours_cold",
            "ours_cold_teardown",
            "ours_cold_new_mappings",
            "ours_cold_small_pages",
            "floor_batched",
            "floor_loop",
            "floor_prealloc",
        )
    }
    fns = {
        "ours_steady": ours_steady,
        "ours_layerwise": ours_layerwise,
        "ours_steady_pool": ours_steady_pool,
        "ours_cold": ours_cold,
        "ours_cold_teardown": ours_cold_teardown,
        "ours_cold_new_mappings": ours_cold_new_mappings,
        "ours_cold_small_pages": ours_cold_small_pages,
        "floor_batched": floor_batched,
        "floor_loop": floor_loop,
        "floor_prealloc": floor_prealloc,
    }
    ours_steady()  # warm-up (allocates rows and scratch once)
    ours_steady_pool()
    floor_prealloc()
    for _ in range(args.repeats):  # interleaved, so that load changes hit all variants alike
        for k, fn in fns.items():
            if k == "ours_cold_new_mappings":
                hostmem.release()
            runs[k].append(timed(fn))
            held.clear()
    stream = [stream_mean(stream_labels) for _ in range(2)]
    stream_pre = [stream_mean(stream_pp) for _ in range(2)]
    runs["ours_stream"] = [t for t, _ in stream]
    runs["ours_stream_prepass"] = [t for t, _ in stream_pre]
    med = {k: float(np.median(v)) for k, v in runs.items()}
    best = {k: float(np.min(v)) for k, v in runs.items()}
    floor_key = min(("floor_batched", "floor_loop", "floor_prealloc"), key=lambda k: med[k])

    check = new_acc()
    check.update(z, check.prepare_labels(labels_t))
    t_compute = timed(check.compute)
    res = check.compute()

    # --- reference: one accumulator per layer, same W and temperature, timed on the first ref_layers
    n_ref = min(L, args.ref_layers)
    def ref_run() -> tuple[float, list]:
        accs = []
        t0 = time.perf_counter()
        for layer in range(n_ref):
            ra = soft_entropy.SoftEntropyAccumulator(d=d, n_bins=m, seed=args.seed, backend="torch")
            ra.w = w.to(torch.float32)
            ra.temp = eps
            ra.update(z[layer], labels=labels)
            accs.append(ra)
        return time.perf_counter() - t0, accs

    ref_times = []
    for _ in range(args.ref_repeats):  # fresh reference accumulators each time, as ours_cold
        t, ref_accs = ref_run()
        ref_times.append(t)
    t_ref_part = float(np.median(ref_times))
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
        f"\nsame numbers as soft-entropy on layers 0..{n_ref - 1}: max |diff| over H and 6 MIs = {worst:.1e}"
    )
    print(
        f"layer 0: H={res.entropy[0]:.4f} capacity={res.capacity[0]:.4f} "
        + " ".join(f"I({k})={res.mi[k][0]:.4f}" for k in sorted(labels))
    )
    print(f"state size (ours): {check.state_nbytes() / 2**20:.1f} MiB (+ scratch, freed by free_workspace())")

    print(f"\nseconds per batch of L x N representations (median / best of {args.repeats}, interleaved)")
    for k in (
        "floor_batched",
        "floor_loop",
        "floor_prealloc",
        "ours_steady",
        "ours_steady_pool",
        "ours_layerwise",
        "ours_stream",
        "ours_stream_prepass",
        "ours_cold",
        "ours_cold_teardown",
        "ours_cold_new_mappings",
        "ours_cold_small_pages",
    ):
        tag = "  <- floor" if k == floor_key else ""
        print(f"  {k:20s} {med[k]:7.3f} / {best[k]:7.3f}{tag}")
    print(f"  {'ours compute()':20s} {t_compute:7.3f}          (once, at the end)")
    scaled = (
        f"  [median of {len(ref_times)}: {t_ref_part:.2f} s on {n_ref} layers"
        + ("]" if n_ref == L else f", scaled x{L / n_ref:.2f}]")
    )
    print(f"  {'soft-entropy':20s} {t_ref:7.3f}{scaled}")
    print(f"  {'its results()':20s} {t_ref_compute:7.3f}  (scaled likewise)")
    print(
        f"\nstate after the 6-batch stream: {stream[0][1] / 2**30:.2f} GiB; with the pre-pass "
        f"{stream_pre[0][1] / 2**30:.2f} GiB ({pp_mass:.0%} of label values are stream-level singletons)"
    )
    print(
        "ours_steady: the same labels again (rows exist); ours_stream: mean of batches 2..6 of a stream whose"
    )
    print(
        "labels keep arriving (label rows grow, L*m*8 bytes each); ours_stream_prepass: the same stream with"
    )
    print("stream-level singletons marked -1; ours_cold: first batch of a fresh accumulator (allocates all;")
    print("  ours_cold_teardown also frees it again, as a loop over fresh accumulators does;")
    print("  ours_cold reuses the huge pages a freed accumulator left idle (estimators.hostmem);")
    print("  ours_cold_new_mappings: the same after hostmem.release(), so every page is faulted in anew;")
    print(f"  ours_cold_small_pages: ours_cold without huge pages; huge pages here: {huge_pages_enabled()})")
    print("ours_steady_pool: ours_steady with cpu_threads=None (torch's intra-op threads everywhere)")
    print(
        "ours_layerwise: labels prepared once, one update(z[l], prepared, layer=l) per layer (as hooks"
        f" do);\n  its per-layer floor is floor_loop: ratio {med['ours_layerwise'] / med['floor_loop']:.2f}"
    )
    keys = ("ours_steady", "ours_stream", "ours_stream_prepass", "ours_cold", "ours_cold_teardown",
            "ours_cold_new_mappings", "ours_cold_small_pages")
    print("\nside by side (medians)")
    print(f"  {'':22s} {'vs soft-entropy':>16s} {'ours / floor':>13s}")
    for k in keys:
        print(f"  {k:22s} {t_ref / med[k]:15.1f}x {med[k] / med[floor_key]:13.2f}")
    print("  targets: cold >= 30x soft-entropy; steady <= 1.5x the floor")
    nbytes = check.state_nbytes() + check.kernel.workspace.nbytes()
    touch = float(np.median([timed(lambda: torch.zeros(nbytes // 8, dtype=torch.float64)) for _ in range(3)]))
    huge = []
    for _ in range(3):
        hostmem.release()
        huge.append(timed(lambda: hostmem.zeros((nbytes // 8,), torch.float64).fill_(0.0)))
    huge = float(np.median(huge))
    print(f"cold - steady = {med['ours_cold'] - med['ours_steady']:.3f} s; a fresh accumulator first writes "
          f"{nbytes / 2**20:.0f} MiB (label rows + scratch),\n  and torch.zeros of that many bytes alone "
          f"(page faults + zeroing) takes {touch:.3f} s here; in new huge pages (hostmem.zeros + one write) "
          f"{huge:.3f} s")


if __name__ == "__main__":
    main()
