"""Fixtures for the probe tests (helpers live in ``_probe_helpers``)."""

from __future__ import annotations

import pytest
from _probe_helpers import CharTokenizer, make_tiny_llama


@pytest.fixture(scope="session")
def tiny_llama():
    return make_tiny_llama()


@pytest.fixture(scope="session")
def char_tok():
    return CharTokenizer()
