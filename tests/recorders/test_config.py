from pathlib import Path

import pytest

from recorders.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_example_and_demo_configs_load_with_expected_urls():
    ex = load_config(ROOT / "recorders" / "recorders.example.toml")
    assert [v.venue for v in ex.venues] == ["binance", "coinbase", "kraken", "okx", "bybit"]
    assert ex.venues[0].urls() == ("wss://stream.binance.com:9443", "https://api.binance.com")
    demo = load_config(ROOT / "recorders" / "demo.toml")
    assert {v.venue: v.urls() for v in demo.venues} == {
        "binance": ("ws://127.0.0.1:9443", "http://127.0.0.1:9443"),
        "coinbase": ("ws://127.0.0.1:9444", "http://127.0.0.1:9444"),
        "kraken": ("ws://127.0.0.1:9445/v2", "http://127.0.0.1:9445")}


@pytest.mark.parametrize("text,match", [
    ('[[venue]]\nvenue = "ftx"\nsymbols = ["BTC-USD"]\n', "unknown venue 'ftx'"),
    ('[recorder]\nflush_intervl = 1\n[[venue]]\nvenue = "kraken"\nsymbols = ["BTC-USD"]\n', "flush_intervl"),
])
def test_bad_config_names_the_problem(tmp_path, text, match):
    p = tmp_path / "bad.toml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(p)
