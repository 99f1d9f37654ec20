"""Connection upkeep against the venue's own rules: the server pings and drops a
client that does not pong in time, and cuts every connection after its
lifetime (Binance: 24 h; here seconds). The recorder must answer every ping
(no drop for a missed pong), reconnect after each cut, and keep recording
without duplicating a trade."""

from __future__ import annotations

import polars as pl
from simrun import start_recorder, write_config

from lab.lake import Lake


def test_answers_server_pings_and_survives_lifetime_cuts(tmp_path):
    from recorders.sim import SimConfig, Simulator

    sim = Simulator(SimConfig(venues=("binance",), assets=("BTC", "ETH"), port_base=0, seed=21,
                              ping_interval_s=0.25, ping_timeout_s=1.0, lifetime_s=3.0))
    lake = tmp_path / "lake"
    with sim.running_in_thread():
        cfg = write_config(tmp_path / "rec.toml", sim.urls(), ("binance",), lake, "keepalive",
                           flush_interval=0.3, maintain_every=0, backoff_base=0.2)
        p = start_recorder(cfg, "--duration", "10", log=tmp_path / "rec.log")
        assert p.wait(90) == 0, (tmp_path / "rec.log").read_text()[-3000:]
    lk = Lake(lake)
    ev = lk.read("feed_events")
    cuts = ev.filter(pl.col("kind") == "reconnect")["detail"].to_list()
    # ~10 s with a 3 s lifetime: at least two cuts, each the lifetime, never a ping timeout
    assert len(cuts) >= 2, ev
    assert all("connection lifetime reached" in d for d in cuts), cuts
    connects = ev.filter(pl.col("kind") == "connect").height
    assert connects >= max(3, len(cuts))
    # every connection carried data (the recorder reconnected and resumed each time)
    ws_ids = lk.read("raw_messages").filter(~pl.col("conn_id").str.starts_with("rest/"))["conn_id"]
    assert ws_ids.n_unique() == connects
    trades = lk.read("trades")
    assert trades.select("symbol", "trade_id").is_duplicated().sum() == 0
    first_cut = ev.filter(pl.col("kind") == "reconnect")["ts_local"].min()
    assert trades.filter(pl.col("ts_local") > first_cut).height > 0
