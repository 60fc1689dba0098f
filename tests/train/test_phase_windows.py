"""The windowed phase rule's pure helpers: window means and gains, the MBE ratio, and the state round trip."""

from __future__ import annotations

import json

import pytest

from infoplane.train.phase_windows import (
    ce_plateau_gain,
    load_window,
    mbe_ratio,
    new_window,
    ratio_decrease,
    window_state,
)


def test_ce_plateau_gain_compares_the_last_two_windows():
    g, last = ce_plateau_gain([9.0, 4.0, 4.0, 2.0, 2.0], 2)  # prev window (4, 4), last window (2, 2)
    assert last == 2.0 and g == pytest.approx(0.5)
    assert ce_plateau_gain([0.0, 0.0, 1.0, 1.0], 2) == (0.0, 1.0)  # |prev| ~ 0: gain defined as 0


def test_mbe_ratio_is_relative_to_each_layers_first_value():
    start: dict = {}
    assert mbe_ratio({0: 2.0, 1: 4.0}, start) == 1.0 and start == {0: 2.0, 1: 4.0}
    assert mbe_ratio({0: 1.0, 1: 3.0}, start) == pytest.approx((0.5 + 0.75) / 2)
    assert mbe_ratio({2: 0.0}, start) == 1.0  # a layer starting at ~0 contributes 1
    assert ratio_decrease([1.0, 0.9, 0.5, 0.4], 2) == pytest.approx(0.5)


def test_window_state_round_trips_through_json_with_int_keys():
    win = new_window(ce_ref=3.5)
    win["ce"], win["r"], win["start"] = [3.0, 2.5], [1.0], {0: 2.0, "h": 1.5}
    back = load_window(json.loads(json.dumps(window_state(win))))
    assert back == win and isinstance(next(iter(back["start"])), int)
    assert new_window() == {"ce": [], "r": [], "start": {}, "ce_ref": None}
