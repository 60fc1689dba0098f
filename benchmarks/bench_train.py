"""Training throughput: baseline CE vs GAPT held in memorisation (bookkeeping only) vs GAPT forced into
compression vs GAPT + alignment every step, and the information-plane monitor's cost at its default interval.

Same model, same batches; the three arms are interleaved in repetitions (arm order rotates) so that
machine-load drift hits all of them alike. Reports median tokens/s per arm and overhead ratios
``tps_baseline / tps_arm - 1``. Target (issue): GAPT overhead <= 10% without alignment tracking.

Monitor: in every repetition, right after the baseline arm's steps, one probe of
:class:`~infoplane.probe.monitor.InfoPlaneMonitor` (default :class:`ProbeConfig`, held-out split) on the
baseline model; overhead = probe seconds / (``--monitor-every`` x seconds per plain step), as the median of
the per-repetition ratios. Target (issue): <= 10% of training time.

    python benchmarks/bench_train.py                       # 4 layers, d 128, ctx 128, BPE 2048, B 16
    python benchmarks/bench_train.py --steps 10 --reps 5 --threads 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time

import torch

from infoplane.data.lm_data import prepare_lm_data
from infoplane.probe.config import ProbeConfig
from infoplane.probe.monitor import InfoPlaneMonitor
from infoplane.train.config import TrainConfig
from infoplane.train.trainer import Trainer

ARMS = {
    # name -> TrainConfig overrides
    "baseline_ce": {"objective": {"kind": "ce", "log_mbe": False}},
    # GAPT's bookkeeping alone: memorisation (controller, no-grad MBE of the scheduled layer for the log)
    "gapt_memorize": {"objective": {"kind": "gapt"},
                      "controller": {"start": "memorize", "patience_mem": 10**9, "spike_tol": 1e9}},
    # the compression phase: bookkeeping plus the MBE penalty's forward and backward
    "gapt_compress": {"objective": {"kind": "gapt"},
                      "controller": {"start": "compress", "patience_comp": 10**9, "spike_tol": 1e9}},
    "gapt_compress_align1": {"objective": {"kind": "gapt"}, "align_every": 1,
                             "controller": {"start": "compress", "patience_comp": 10**9, "spike_tol": 1e9}},
}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="bpe:2048")
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-head", type=int, default=4)
    ap.add_argument("--block-size", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=8, help="timed steps per arm per repetition")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per arm before timing")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="write results here")
    ap.add_argument("--monitor-every", type=int, default=None,
                    help="probe interval in steps (default: InfoPlaneMonitor's default)")
    ap.add_argument("--no-monitor", action="store_true", help="skip the monitor measurement")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tok, splits = prepare_lm_data("kjv", args.tokenizer, 0.05, seed=0)
    trainers = {}
    for name, over in ARMS.items():
        model = {"n_layer": args.n_layer, "d_model": args.d_model, "n_head": args.n_head,
                 "block_size": args.block_size}
        cfg = TrainConfig(model=model, batch_size=args.batch_size,
                          steps=10**6, eval_every=0, progress=False, checkpoint_steps="final",
                          out_dir="/tmp/infoplane-bench-unused", warmup_steps=0, **over)
        trainers[name] = Trainer(cfg, splits=splits, tokenizer=tok)
    for tr in trainers.values():
        for _ in range(args.warmup):
            tr.train_step()
    monitor, probe_dir = None, tempfile.TemporaryDirectory(prefix="infoplane-bench-monitor-")
    every = args.monitor_every or InfoPlaneMonitor().every
    if not args.no_monitor:
        probe_cfg = ProbeConfig(seq_len=min(ProbeConfig().seq_len, args.block_size))
        ids = splits.val.tolist()
        held_out = [ids[i:i + probe_cfg.seq_len] for i in range(0, len(ids) - probe_cfg.seq_len + 1,
                                                                  probe_cfg.seq_len)]
        monitor = InfoPlaneMonitor(held_out, probe_cfg, every=every, out_dir=probe_dir.name)
        monitor.probe(trainers["baseline_ce"].model, 0)  # warm-up: plans the probe set once (not timed)
    probe_s: list[float] = []
    step_s: list[float] = []
    tokens_per_step = args.batch_size * args.block_size
    names = list(ARMS)
    # wall-clock and process-CPU throughput; on a shared machine with 1 thread the CPU-time figure measures
    # the work itself, the wall-clock one also the machine's load
    tps: dict[str, dict[str, list[float]]] = {c: {n: [] for n in names} for c in ("wall", "cpu")}
    for r in range(args.reps):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            tr = trainers[name]
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(args.steps):
                tr.train_step()
            tps["wall"][name].append(args.steps * tokens_per_step / (time.perf_counter() - t0))
            tps["cpu"][name].append(args.steps * tokens_per_step / (time.process_time() - c0))
            if name == "baseline_ce" and monitor is not None:  # side by side: the probe right after
                step_s.append(args.steps * tokens_per_step / tps["wall"][name][-1] / args.steps)
                t1 = time.perf_counter()
                monitor.probe(tr.model, r + 1)
                probe_s.append(time.perf_counter() - t1)
    res: dict = {
        "config": vars(args), "threads": torch.get_num_threads(), "vocab_size": tok.get_vocab_size(),
        "params": trainers["baseline_ce"].model.num_parameters(), "tokens_per_step": tokens_per_step,
    }
    print(f"model: {args.n_layer} layers, d {args.d_model}, ctx {args.block_size}, "
          f"vocab {res['vocab_size']}, {res['params']:,} params, batch {args.batch_size}, "
          f"threads {res['threads']}")
    for clock, t in tps.items():
        med = {n: statistics.median(v) for n, v in t.items()}
        # paired: ratio of adjacent measurements within a repetition, then the median (robust to load drift)
        paired = {n: statistics.median(b / a for a, b in zip(t[n], t["baseline_ce"])) - 1.0
                  for n in names if n != "baseline_ce"}
        res[clock] = {"tokens_per_s_median": med, "tokens_per_s_all": t,
                      "overhead_ratio_of_medians": {n: med["baseline_ce"] / med[n] - 1.0 for n in paired},
                      "overhead_paired_median": paired}
        print(f" {clock}-clock tokens/s (median of {args.reps} repetitions x {args.steps} steps):")
        for n in names:
            extra = "" if n == "baseline_ce" else (
                f"   overhead {100 * res[clock]['overhead_ratio_of_medians'][n]:+.1f}% (ratio of medians), "
                f"{100 * paired[n]:+.1f}% (median of paired ratios)")
            print(f"  {n:22s} {med[n]:9.0f}{extra}")
    if monitor is not None:
        ratios = [p / (every * s) for p, s in zip(probe_s, step_s)]
        res["monitor"] = {"every": every, "probe_seconds": probe_s, "step_seconds": step_s,
                          "n_samples": monitor.rows[0]["n_samples"],
                          "overhead_median": statistics.median(ratios), "overhead_all": ratios}
        print(f" monitor (probe of {res['monitor']['n_samples']} positions every {every} steps, default "
              f"ProbeConfig): probe {statistics.median(probe_s):.3f} s, plain step "
              f"{statistics.median(step_s):.4f} s -> overhead "
              f"{100 * res['monitor']['overhead_median']:+.1f}% of training time "
              "(median of paired ratios; target <= 10%)")
    probe_dir.cleanup()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    main()
