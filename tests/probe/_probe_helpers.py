"""Helpers for the probe tests: a tiny randomly initialised Llama, a char-level tokenizer, sample texts."""

from __future__ import annotations

import os

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

VOCAB = 128


class CharTokenizer:
    """Trivial tokenizer: one token per character (code point clipped to the tiny vocabulary)."""

    vocab_size = VOCAB

    def encode(self, text: str) -> list[int]:
        return [min(ord(c), VOCAB - 1) for c in text]


def make_tiny_llama(seed: int = 0, n_layers: int = 3, hidden: int = 16):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=2 * hidden,
                      num_hidden_layers=n_layers, num_attention_heads=2, num_key_value_heads=2,
                      max_position_embeddings=256)
    return LlamaForCausalLM(cfg).eval()


TEXTS = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good: and God divided the light from the darkness.",
    "And God called the light Day, and the darkness he called Night.",
    "And the evening and the morning were the first day.",
    "And God said, Let there be a firmament in the midst of the waters.",
    "And God made the firmament, and divided the waters which were under the firmament.",
]


def distributed_worker(rank: int, world: int, init_file: str, out_dir: str, config: dict) -> None:
    """Child of ``torch.multiprocessing.spawn``: sharded analyze on a gloo group, rows dumped as JSON."""
    import json

    import torch.distributed as dist

    from infoplane.probe.config import ProbeConfig
    from infoplane.probe.distributed import analyze_distributed

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        ids = [CharTokenizer().encode(t) for t in TEXTS]
        res = analyze_distributed(make_tiny_llama(), ids, ProbeConfig.from_dict(config), progress=False)
        with open(f"{out_dir}/rank{rank}.json", "w") as fh:
            meta = {k: res.metadata[k] for k in ("n_samples", "shard")}
            json.dump({"rows": res.rows, "metadata": meta}, fh)
    finally:
        dist.destroy_process_group()
