"""Shared fixtures of the downstream tests: Brown-format sentences built in code (no corpus download)."""

from __future__ import annotations

import numpy as np

from infoplane.downstream.brown import BrownSentence

NOUNS = ["river", "house", "letter", "garden", "window", "market", "teacher", "engine", "island", "doctor"]
VERBS = ["opened", "painted", "carried", "watched", "followed", "visited", "cleaned", "described"]
ADJS = ["quiet", "green", "narrow", "heavy", "bright", "distant", "simple", "careful"]


def sentences(n_docs: int = 24, per_doc: int = 8, seed: int = 0) -> list[BrownSentence]:
    """``n_docs`` files of ``per_doc`` sentences ``The ADJ NOUN VERB the ADJ NOUN near the NOUN .``"""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(n_docs):
        doc = f"c{'abcdefghjklmnpr'[d % 15]}{d:02d}"
        for _ in range(per_doc):
            w = ["The", rng.choice(ADJS), rng.choice(NOUNS), rng.choice(VERBS), "the", rng.choice(ADJS),
                 rng.choice(NOUNS), "near", "the", rng.choice(NOUNS), "."]
            tags = ["at", "jj", "nn", "vbd", "at", "jj", "nn", "in", "at", "nn", "."]
            out.append(BrownSentence(doc, tuple(str(x) for x in w), tuple(tags)))
    return out
