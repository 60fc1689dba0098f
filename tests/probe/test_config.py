"""ProbeConfig: validation at construction, strict from_dict, to_dict round trip, replace."""

from __future__ import annotations

import json

import pytest

from infoplane.probe.config import ProbeConfig


def test_defaults_round_trip_and_normalisation():
    cfg = ProbeConfig()
    assert cfg.orders == (1, 2, 3) and cfg.max_tokens == 4096 and cfg.null is True
    d = cfg.to_dict()
    assert d["orders"] == [1, 2, 3] and d["sequence_labels"] == []
    assert ProbeConfig.from_dict(json.loads(json.dumps(d))) == cfg  # JSON-safe and exact
    c = ProbeConfig(orders=[3, 1, 1], sequence_labels="book", temperature=1)
    assert c.orders == (1, 3) and c.sequence_labels == ("book",) and c.temperature == 1.0
    assert isinstance(c.temperature, float)
    assert hash(c) == hash(ProbeConfig(orders=(1, 3), sequence_labels=("book",), temperature=1.0))
    assert c.replace(seed=4).seed == 4 and c.seed == 0
    assert ProbeConfig.field_names()[0] == "orders" and "all_layers_update" in ProbeConfig.field_names()


def test_from_dict_is_strict():
    with pytest.raises(ValueError) as err:
        ProbeConfig.from_dict({"orders": [1], "max_token": 10})
    msg = str(err.value)
    assert "'max_token'" in msg and "max_tokens" in msg and "valid keys" in msg
    with pytest.raises(ValueError, match="mapping"):
        ProbeConfig.from_dict([("orders", [1])])
    with pytest.raises(ValueError, match="unknown"):
        ProbeConfig().replace(n_bin=10)


@pytest.mark.parametrize(("changes", "match"), [
    ({"orders": ()}, "orders"),
    ({"orders": (0, 1)}, "orders"),
    ({"orders": ("a",)}, "orders"),
    ({"max_tokens": 0}, "max_tokens must be an integer >= 1, got 0"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"seq_len": 3, "orders": (1, 2)}, "seq_len=3 leaves no valid position for order 2"),
    ({"batch_size": 0}, "batch_size"),
    ({"batch_size": True}, "batch_size"),
    ({"n_bins": 1}, "n_bins must be an integer >= 2"),
    ({"seed": -1}, "seed"),
    ({"null": "yes"}, "null must be True or False"),
    ({"min_count": 0}, "min_count"),
    ({"calibration": "exakt"}, "calibration must be one of"),
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": float("nan")}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"padding_side": "middle"}, "padding_side must be 'left' or 'right', got 'middle'"),
    ({"all_layers_update": 1}, "all_layers_update"),
    ({"sequence_labels": ("input_1",)}, "clashes"),
    ({"sequence_labels": ("",)}, "sequence_labels"),
    ({"sequence_labels": ("a", "a")}, "duplicates"),
])
def test_invalid_settings_are_clear_value_errors(changes, match):
    with pytest.raises(ValueError, match=match):
        ProbeConfig(**changes)


def test_resolve():
    assert ProbeConfig.resolve(None) == ProbeConfig()
    cfg = ProbeConfig(seed=3)
    assert ProbeConfig.resolve(cfg) is cfg
    with pytest.raises(ValueError, match="ProbeConfig.from_dict"):
        ProbeConfig.resolve({"seed": 3})


def test_max_tokens_none_means_whole_corpus():
    assert ProbeConfig(max_tokens=None).to_dict()["max_tokens"] is None
