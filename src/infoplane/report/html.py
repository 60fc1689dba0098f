"""A self-contained HTML document builder: inline CSS, figures embedded as base64 PNG or inline SVG.

Nothing in the output references the network (no ``http(s)`` ``src``/``href``, no external scripts, fonts or
style sheets); :func:`check_self_contained` verifies that and is used by the tests and by the report build.
"""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from infoplane.experiments.presentation import fmt  # one number format for the report and the hooks

__all__ = ["Section", "fmt", "esc", "table", "figure", "render_document", "check_self_contained"]

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;
color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em;border-bottom:2px solid #444}
h2{font-size:1.3em;margin-top:2em;border-bottom:1px solid #bbb}
h3{font-size:1.05em}
table{border-collapse:collapse;margin:.8em 0;font-size:.86em}
th,td{border:1px solid #ccc;padding:.25em .5em;vertical-align:top;text-align:left}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.v-holds{background:#d9f2d9}.v-does-not-hold{background:#f8d7d7}.v-inconclusive{background:#fff3cd}
.v-not-run{background:#eee;color:#666}.v-not-testable-at-this-scale{background:#e3e8f5}
figure{margin:1em 0}figure img,figure svg{max-width:100%;height:auto;border:1px solid #eee}
figcaption{font-size:.85em;color:#555}
.note{font-size:.88em;color:#444;background:#f7f7f7;padding:.5em .8em;border-left:3px solid #999}
code,pre{font-size:.85em;background:#f4f4f4}pre{padding:.5em;overflow-x:auto}
details{margin:.5em 0}
"""


def esc(x: Any) -> str:
    """HTML-escape ``str(x)``."""
    return html.escape("" if x is None else str(x), quote=True)


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
          headers: Mapping[str, str] | None = None, cls: str = "", row_class: str | None = None,
          raw_columns: Iterable[str] = ()) -> str:
    """An HTML table of ``rows`` (dicts). Numbers are right-aligned and formatted with :func:`fmt`.

    ``row_class``: a key whose (slugified) value becomes the row's CSS class ``v-<value>``.
    ``raw_columns``: columns whose values are already HTML (not escaped).
    """
    rows = list(rows)
    if columns is None:
        columns = []
        for r in rows:
            for k in r:
                if k not in columns:
                    columns.append(k)
    headers = headers or {}
    raw = set(raw_columns)
    out = [f'<table class="{esc(cls)}"><thead><tr>']
    out += [f"<th>{esc(headers.get(c, c))}</th>" for c in columns]
    out.append("</tr></thead><tbody>")
    for r in rows:
        rc = ""
        if row_class and r.get(row_class) is not None:
            rc = f' class="v-{re.sub(r"[^a-z0-9]+", "-", str(r[row_class]).lower()).strip("-")}"'
        out.append(f"<tr{rc}>")
        for c in columns:
            v = r.get(c)
            if c in raw:
                out.append(f"<td>{'' if v is None else v}</td>")
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(f'<td class="num">{esc(fmt(v))}</td>')
            else:
                out.append(f"<td>{esc(fmt(v))}</td>")
        out.append("</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def figure(path: str | Path, caption: str = "", alt: str = "") -> str:
    """Embed an image file: PNG/JPEG as a base64 data URI, SVG inline (its XML prolog stripped)."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"figure {str(p)!r} not found")
    suffix = p.suffix.lower()
    if suffix == ".svg":
        svg = p.read_text(encoding="utf-8")
        svg = re.sub(r"^\s*<\?xml[^>]*\?>\s*", "", svg)
        svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
        body = svg
    elif suffix in (".png", ".jpg", ".jpeg"):
        mime = "image/png" if suffix == ".png" else "image/jpeg"
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        body = f'<img alt="{esc(alt or caption or p.stem)}" src="data:{mime};base64,{data}">'
    else:
        raise ValueError(f"figure {str(p)!r}: expected a .png, .jpg or .svg file")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure id="fig-{esc(p.stem)}">{body}{cap}</figure>'


@dataclass
class Section:
    """A report section: ``title``, an ``id`` anchor and HTML ``body`` parts (already escaped/built)."""

    title: str
    id: str
    parts: list[str] = field(default_factory=list)

    def add(self, html_part: str) -> Section:
        self.parts.append(html_part)
        return self

    def para(self, text: str, cls: str = "") -> Section:
        c = f' class="{esc(cls)}"' if cls else ""
        self.parts.append(f"<p{c}>{esc(text)}</p>")
        return self


def render_document(title: str, sections: Sequence[Section], intro: str = "") -> str:
    """The full HTML document (UTF-8, inline CSS, table of contents)."""
    toc = "".join(f'<li><a href="#{esc(s.id)}">{esc(s.title)}</a></li>' for s in sections)
    body = "".join(f'<section id="{esc(s.id)}"><h2>{esc(s.title)}</h2>{"".join(s.parts)}</section>'
                   for s in sections)
    intro_html = f"<p>{esc(intro)}</p>" if intro else ""
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{esc(title)}</h1>{intro_html}<nav><ol>{toc}</ol></nav>{body}</body></html>\n")


_EXTERNAL = re.compile(r"""(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
_CSS_URL = re.compile(r"""url\(\s*["']?\s*(?:https?:)?//""", re.I)
_IMPORT = re.compile(r"@import", re.I)


def check_self_contained(document: str) -> list[str]:
    """Problems that would make ``document`` touch the network (empty list = self-contained)."""
    problems = []
    for m in _EXTERNAL.finditer(document):
        problems.append(f"external reference: {document[m.start():m.start() + 80]!r}")
    for m in _CSS_URL.finditer(document):
        problems.append(f"external CSS url(): {document[m.start():m.start() + 80]!r}")
    if _IMPORT.search(document):
        problems.append("CSS @import")
    for m in re.finditer(r"<script[^>]*\bsrc\s*=", document, re.I):
        problems.append(f"external script: {document[m.start():m.start() + 80]!r}")
    for m in re.finditer(r"<link\b[^>]*>", document, re.I):
        problems.append(f"<link> element: {m.group(0)[:80]!r}")
    return problems
