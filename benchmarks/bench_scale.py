"""Benchmark: accumulator state, wall time and peak RSS at paper-like scale, with the memory plan it chose.

Workload: real token labels -- the embedded KJV corpus, tokenised with a byte-level BPE trained on it
(``infoplane.data.tokenizer.train_bpe_tokenizer``, vocabulary ``--vocab``), packed into 512-token sequences
and labelled by the probe's own pre-pass (``prepare_plan``: input/output n-grams n = 1..4, singletons without
rows) -- and synthetic hidden states: 31 layers x d = 576, each position's vector a fixed random vector of its
token per layer (so labels carry information), m = 100, permutation null on. The accumulator is fed exactly
as ``analyze`` does (one pass per layer group of the plan, rows reserved from the pre-pass).

Every size runs in its own child process (its own peak RSS). Then state bytes are fitted against positions
(power law, log-log least squares) and projected to the paper's 5.1M positions, with the memory per rank
when the label rows are sharded over 1, 2, 4, 8 ranks.

Run: ``python benchmarks/bench_scale.py [--positions 100000 300000 1000000] [--budget 12GiB]``.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time

import numpy as np
import torch

PAPER_POSITIONS = 5_120_000  # 10,000 texts x 512 tokens (Conklin et al. 2026, sec. 3)
GiB = float(1 << 30)


def _plan(n_positions: int, vocab: int, seq_len: int, batch_size: int):
    from infoplane.data.corpus import load_corpus
    from infoplane.data.tokenizer import train_bpe_tokenizer
    from infoplane.probe.config import ProbeConfig
    from infoplane.probe.plan import prepare_plan

    texts = [d.text for d in load_corpus("kjv").documents]
    tok = train_bpe_tokenizer(texts, vocab)
    stream = np.concatenate([np.asarray(e.ids, dtype=np.int64) for e in tok.encode_batch(texts)])
    seqs = [stream[a:a + seq_len].tolist() for a in range(0, len(stream) - seq_len + 1, seq_len)]
    per_seq = seq_len - 2 * 4 + 1
    if len(seqs) * per_seq < n_positions:
        raise SystemExit(f"KJV gives {len(seqs) * per_seq} positions with vocab {vocab}; lower --vocab")
    cfg = ProbeConfig(orders=(1, 2, 3, 4), max_tokens=n_positions, seq_len=seq_len, batch_size=batch_size,
                      n_bins=100, null=True)
    return prepare_plan(seqs, cfg)


def child(args: argparse.Namespace) -> None:
    """One size: plan, accumulate every pass, print one JSON line."""
    from infoplane.estimators import SoftEntropyAccumulator
    from infoplane.estimators.memory import available_memory
    from infoplane.probe.config import parse_bytes
    from infoplane.probe.memory import plan_memory

    torch.manual_seed(0)
    t0 = time.perf_counter()
    plan = _plan(args.positions[0], args.vocab, args.seq_len, args.batch_size)
    t_plan = time.perf_counter() - t0
    L, d = args.layers, args.dim
    budget = parse_bytes(args.budget) if args.budget else available_memory("cpu")
    mplan = plan_memory(plan, L, d, "cpu", budget=budget)
    pool = torch.randn(L, args.vocab, d)  # per layer, one random vector per token id (synthetic states)
    t1 = time.perf_counter()
    t_upd = 0.0  # prepare_labels + update only (not the synthetic hidden states)
    state, result_h = 0, []
    for group in mplan.groups:
        acc = SoftEntropyAccumulator(d, n_bins=100, seed=0, n_layers=len(group), null=True, null_seed=0)
        acc.reserve_rows(mplan.row_counts)
        g = torch.tensor(group)
        for b in plan.batches:
            ids = b.input_ids[b.positions]  # [N] token at each analysed position
            z = pool[g][:, ids, :] + 0.1 * torch.randn(len(group), len(ids), d)
            t2 = time.perf_counter()
            acc.update(z, acc.prepare_labels(b.labels))
            t_upd += time.perf_counter() - t2
        state = max(state, acc.state_nbytes(reserved=True))
        result_h.append(acc.compute().entropy)
        del acc
    t_acc = time.perf_counter() - t1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"positions": plan.n_samples, "label_rows": mplan.row_counts,
                      "state_one_pass": mplan.state_bytes_one_pass, "state_per_pass": state,
                      "passes": mplan.n_passes, "budget": budget, "plan_s": t_plan, "accumulate_s": t_acc,
                      "update_s": t_upd,
                      "peak_rss": peak, "plan": mplan.describe()}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--positions", type=int, nargs="+", default=[100_000, 300_000, 1_000_000])
    p.add_argument("--layers", type=int, default=31)
    p.add_argument("--dim", type=int, default=576)
    p.add_argument("--vocab", type=int, default=3584, help="BPE vocabulary trained on KJV (3584: 1.009M "
                   "positions; 4096: only 991k)")
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=8, help="sequences per update")
    p.add_argument("--budget", default=None, help="memory budget (default: half the available memory)")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    rows = []
    for n in args.positions:
        cmd = [sys.executable, __file__, "--child", "--positions", str(n), "--layers", str(args.layers),
               "--dim", str(args.dim), "--vocab", str(args.vocab), "--seq-len", str(args.seq_len),
               "--batch-size", str(args.batch_size)] + (["--budget", args.budget] if args.budget else [])
        out = subprocess.run(cmd, capture_output=True, text=True)
        if out.returncode != 0:
            print(f"{n} positions failed:\n{out.stderr[-2000:]}")
            continue
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append(r)
        print(f"{r['positions']:>9,d} positions: {r['plan']}")
    if not rows:
        return
    print(f"\n{'positions':>10} {'label rows':>11} {'state 1 pass':>13} {'passes':>6} {'state/pass':>11} "
          f"{'plan s':>7} {'accum s':>8} {'update s':>9} {'peak RSS':>9}")
    for r in rows:
        rows_n = sum(r["label_rows"].values())
        print(f"{r['positions']:>10,d} {rows_n:>11,d} {r['state_one_pass'] / GiB:>9.2f} GiB "
              f"{r['passes']:>6d} {r['state_per_pass'] / GiB:>7.2f} GiB {r['plan_s']:>7.1f} "
              f"{r['accumulate_s']:>8.1f} {r['update_s']:>9.1f} {r['peak_rss'] / GiB:>5.2f} GiB")
    if len(rows) < 2:
        return
    # state ~ a * N^b (log-log least squares): label rows grow sub-linearly with positions
    x = np.log([r["positions"] for r in rows])
    y = np.log([r["state_one_pass"] for r in rows])
    b, log_a = np.polyfit(x, y, 1)
    proj = math.exp(log_a) * PAPER_POSITIONS ** b
    print(f"\nfit: state = {math.exp(log_a):.3g} * N^{b:.3f} bytes; at {PAPER_POSITIONS:,d} positions: "
          f"{proj / GiB:.1f} GiB of state in one process")
    batch_p = 8 * 100 * args.layers * (args.batch_size * (args.seq_len - 7))  # float64 p [N, L, m] of a batch
    logits = 8 * 100 * args.batch_size * 512
    print("per rank with label rows sharded by label id (analyze_distributed(shard_rows=True): state / ranks "
          "+ this rank's assignments\n  + every rank's gathered assignments of the round + logits):")
    for k in (1, 2, 4, 8):
        scratch = batch_p * (1 if k == 1 else k + 1) + logits
        print(f"  {k} rank(s): {(proj / k + scratch) / GiB:6.1f} GiB")


if __name__ == "__main__":
    main()
