"""Fixtures shared by the whole suite."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture
def one_thread():
    """One torch intra-op thread for the test (restored after): tiny models on a shared 2-core machine stall
    in thread-pool waits otherwise. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
