"""server/refit_threshold.set_threshold: the one edit the refit makes to a model config,
with comments and every other setting kept, read back by the config reader."""

from __future__ import annotations

import pytest

from config.model_config import parse_model_config
from server.refit_threshold import set_threshold
from tests.conftest import ROOT


def test_the_tracked_config_gains_a_table_and_keeps_its_comments():
    text = (ROOT / "config" / "model.toml").read_text()
    new = set_threshold(text, "crypto-logit-v1", 0.4099999964237213, "m.toml")
    assert new.startswith(text.rstrip("\n"))  # every line kept, the table appended
    cfg, old = parse_model_config(new, "m.toml"), parse_model_config(text, "m.toml")
    assert dict(cfg.decision_threshold) == {"crypto-logit-v1": 0.4099999964237213}
    assert (cfg.artifact, cfg.servable, cfg.model_name) == (
        old.artifact,
        old.servable,
        old.model_name,
    )


def test_an_entry_is_replaced_in_place_whether_bare_or_quoted():
    text = (
        'artifact = "a"\n'
        "[decision_threshold]  # refits\n"
        "a = 0.3  # by hand\n"
        '"<é>" = 0.2\n'
        "b-1 = 0.5\n"
    )
    new = set_threshold(text, "a", 0.25, "m.toml")
    assert dict(parse_model_config(new, "m.toml").decision_threshold) == {
        "a": 0.25,
        "<é>": 0.2,
        "b-1": 0.5,
    }
    new = set_threshold(new, "<é>", 0.125, "m.toml")
    new = set_threshold(new, "c", 1.0, "m.toml")
    assert dict(parse_model_config(new, "m.toml").decision_threshold) == {
        "a": 0.25,
        "<é>": 0.125,
        "b-1": 0.5,
        "c": 1.0,
    }
    assert "[decision_threshold]  # refits" in new
    assert '"a" = 0.25  # by hand' in new  # the replaced line keeps its comment


def test_literal_and_escaped_keys_crlf_and_a_quoted_header():
    text = (
        'artifact = "a"\r\n'
        'model_name = """x\r\ny"""\r\n'  # a CRLF inside a string stays as it is
        '["decision_threshold"]\r\n'
        "'lit' = 0.3\r\n"
        '"\\U00000062" = 0.4\r\n'
    )
    new = set_threshold(text, "lit", 0.25, "m.toml")
    new = set_threshold(new, "b", 0.125, "m.toml")
    assert dict(parse_model_config(new, "m.toml").decision_threshold) == {
        "lit": 0.25,
        "b": 0.125,
    }
    assert new.count("\r\n") == new.count("\n") == 6  # every line still ends in CRLF
    assert 'model_name = """x\r\ny"""' in new


def test_what_it_cannot_edit_safely_it_refuses():
    inline = 'artifact = "a"\ndecision_threshold = {a = 0.3}\n'
    with pytest.raises(ValueError, match="not one \\[decision_threshold\\] table"):
        set_threshold(inline, "a", 0.25, "m.toml")
    with pytest.raises(ValueError, match="must be a probability"):
        set_threshold('artifact = "a"\n', "a", 0.0, "m.toml")
    with pytest.raises(ValueError, match="not TOML"):
        set_threshold('artifact = "a', "a", 0.25, "m.toml")
