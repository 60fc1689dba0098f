"""The HTML builder: escaping, number formatting, embedded figures, self-containment check."""

from __future__ import annotations

import base64
import re

import pytest

from infoplane.report.html import Section, check_self_contained, figure, fmt, render_document, table


def _png(path):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(path, format="png", dpi=30)
    fig.savefig(path.with_suffix(".svg"), format="svg")
    plt.close(fig)
    return path


def test_fmt():
    assert fmt(None) == "\u2013" and fmt(float("nan")) == "\u2013"
    assert fmt(0.123456) == "0.1235" and fmt(12345) == "12,345" and fmt(3) == "3"
    assert fmt(1e-6) == "1.000e-06" and fmt(0.0) == "0"


def test_table_escapes_and_classes():
    html = table([{"claim": "<b>x</b>", "v": 1.5, "verdict": "does not hold"}], row_class="verdict")
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html
    assert 'class="v-does-not-hold"' in html and '<td class="num">1.5</td>' in html


def test_figures_embedded_and_document_self_contained(tmp_path):
    png = _png(tmp_path / "f.png")
    sec = Section("Results", "res").para("numbers & words").add(figure(png, "a caption"))
    sec.add(figure(png.with_suffix(".svg"), "svg caption"))
    doc = render_document("Title", [sec])
    m = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', doc)
    assert m and base64.b64decode(m.group(1)) == png.read_bytes()
    assert "<svg" in doc and "<?xml" not in doc
    assert "numbers &amp; words" in doc
    assert check_self_contained(doc) == []
    assert not re.search(r'(src|href)\s*=\s*["\']https?:', doc)


@pytest.mark.parametrize("snippet", [
    '<img src="http://example.com/a.png">', "<a href='https://x.org'>x</a>", '<script src="a.js"></script>',
    '<link rel="stylesheet" href="s.css">', "<style>@import 'x.css';</style>",
    "<div style=\"background:url('//cdn.x/y.png')\"></div>",
])
def test_external_references_detected(snippet):
    assert check_self_contained(f"<html><body>{snippet}</body></html>")


def test_figure_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        figure(tmp_path / "missing.png")
    bad = tmp_path / "x.txt"
    bad.write_text("x")
    with pytest.raises(ValueError, match="png"):
        figure(bad)
