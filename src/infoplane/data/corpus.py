"""Text corpora: the embedded King James Bible, plain-text and JSONL files, any iterable of texts.

The default corpus ships inside the package (``corpora/kjv.tsv.gz``, public domain, see
``corpora/LICENSE-KJV.txt``), so demos and tests never touch the network.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Document", "Corpus", "load_corpus", "embedded_corpus", "EMBEDDED_CORPORA"]

EMBEDDED_CORPORA = {"kjv": "kjv.tsv.gz"}


@dataclass(frozen=True)
class Document:
    """One text with optional per-text labels (e.g. ``{"genre": "law"}``) that apply to all its positions."""

    text: str
    labels: dict[str, Any] = field(default_factory=dict)


@dataclass
class Corpus:
    """An ordered list of documents plus where they came from.

    ``fingerprint`` is the SHA-256 of the texts (and labels) in order: two corpora with the same
    fingerprint give the same statistics for the same model, seed and token budget.
    """

    documents: list[Document]
    source: str

    def __post_init__(self) -> None:
        if not self.documents:
            raise ValueError(f"corpus {self.source!r} is empty: expected at least one non-empty text")

    def __len__(self) -> int:
        return len(self.documents)

    def __iter__(self):
        return iter(self.documents)

    @property
    def texts(self) -> list[str]:
        return [d.text for d in self.documents]

    @property
    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for d in self.documents:
            h.update(d.text.encode("utf-8"))
            h.update(b"\x00")
            if d.labels:
                h.update(json.dumps(d.labels, sort_keys=True, default=str).encode("utf-8"))
            h.update(b"\x01")
        return h.hexdigest()

    def n_chars(self) -> int:
        return sum(len(d.text) for d in self.documents)


def embedded_corpus(name: str = "kjv", group: str = "verse") -> Corpus:
    """The embedded corpus ``name``.

    For ``kjv``: ``group="verse"`` gives one document per verse (31,102) labelled with its ``book``;
    ``group="chapter"`` joins the verses of each chapter into one document (1,189).
    """
    if name not in EMBEDDED_CORPORA:
        raise ValueError(f"unknown embedded corpus {name!r}; available: {sorted(EMBEDDED_CORPORA)}")
    if group not in ("verse", "chapter"):
        raise ValueError(f"group must be 'verse' or 'chapter', got {group!r}")
    ref = resources.files("infoplane.data") / "corpora" / EMBEDDED_CORPORA[name]
    with ref.open("rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t", 1) for line in fh if line.strip()]
    docs: list[Document] = []
    if group == "verse":
        for ref_, text in rows:
            book = ref_.rsplit(" ", 1)[0]
            docs.append(Document(text, {"book": book}))
    else:
        current_key, buf = None, []
        for ref_, text in rows:
            key = ref_.split(":", 1)[0]
            if key != current_key and buf:
                docs.append(Document(" ".join(buf), {"book": current_key.rsplit(" ", 1)[0]}))
                buf = []
            current_key = key
            buf.append(text)
        if buf:
            docs.append(Document(" ".join(buf), {"book": current_key.rsplit(" ", 1)[0]}))
    return Corpus(docs, source=f"embedded:{name}:{group}")


def _read_utf8(path: Path) -> str:
    """The text of ``path`` (``.gz``: decompressed); a binary, non-UTF-8 or broken gzip file is a ValueError
    naming the file and what was expected."""
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError; a truncated stream an EOFError
        raise ValueError(f"corpus file {str(path)!r}: not a readable gzip file ({exc}); expected gzip-"
                         "compressed UTF-8 text") from None
    if b"\x00" in raw[:1 << 16]:
        raise ValueError(f"corpus file {str(path)!r} looks binary (NUL bytes); expected UTF-8 text "
                         "(.txt, one document per paragraph or line) or JSON lines (.jsonl)")
    try:  # universal newlines, as text-mode reading gives them
        return raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError as exc:
        raise ValueError(f"corpus file {str(path)!r} is not UTF-8 text (byte {raw[exc.start]:#04x} at offset "
                         f"{exc.start}); expected UTF-8 text: convert it, e.g. iconv -f latin1 -t utf-8") \
            from None


def _read_text_file(path: Path) -> list[Document]:
    content = _read_utf8(path)
    # paragraphs (blank-line separated) are documents; a file without blank lines gives one per line
    parts = [p.strip() for p in content.split("\n\n")] if "\n\n" in content else content.splitlines()
    return [Document(p) for p in parts if p.strip()]


def _read_jsonl(path: Path, text_key: str) -> list[Document]:
    docs = []
    for lineno, line in enumerate(_read_utf8(path).split("\n"), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
        if not isinstance(obj, dict) or text_key not in obj or not isinstance(obj[text_key], str):
            raise ValueError(f"{path}:{lineno}: expected an object with a string field {text_key!r}")
        labels = {k: v for k, v in obj.items() if k != text_key}
        if obj[text_key].strip():
            docs.append(Document(obj[text_key], labels))
    return docs


def load_corpus(source: str | os.PathLike | Iterable[str] | Iterable[Document] | Corpus = "kjv",
                text_key: str = "text") -> Corpus:
    """Load a corpus from an embedded name (``"kjv"``), a ``.txt``/``.jsonl`` file (optionally ``.gz``),
    a directory of such files (sorted by name), or any iterable of strings or :class:`Document`.

    JSONL lines are objects with a ``text_key`` string; every other field becomes a per-text label.
    """
    if isinstance(source, Corpus):
        return source
    if isinstance(source, str) and source in EMBEDDED_CORPORA:
        return embedded_corpus(source)
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"corpus {str(source)!r} not found: expected an embedded name {sorted(EMBEDDED_CORPORA)}, "
                "a .txt/.jsonl file or a directory of them"
            )
        files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
        docs: list[Document] = []
        for f in files:
            stem = f.name[:-3] if f.name.endswith(".gz") else f.name
            if stem.endswith(".jsonl") or stem.endswith(".json"):
                docs.extend(_read_jsonl(f, text_key))
            else:
                docs.extend(_read_text_file(f))
        return Corpus(docs, source=str(path))
    docs = []
    for item in source:
        if isinstance(item, Document):
            docs.append(item)
        elif isinstance(item, str):
            if item.strip():
                docs.append(Document(item))
        else:
            raise TypeError(f"corpus items must be str or Document, got {type(item).__name__}")
    return Corpus(docs, source="iterable")
