"""The real venues speak wss:// and https://. The simulator serves TLS with a
certificate from a throwaway CA; the recorder must record through it when that
CA is trusted (SSL_CERT_FILE, as an operator would set for a private CA), and
refuse, with the reason in feed_events, when it is not."""

from __future__ import annotations

import polars as pl
import pytest
import trustme
from simrun import start_recorder, write_config

from lab.lake import Lake


@pytest.fixture(scope="module")
def tls_sim(tmp_path_factory):
    from recorders.sim import SimConfig, Simulator

    d = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = d / "chain.pem", d / "key.pem", d / "ca.pem"
    leaf.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(b.bytes() for b in leaf.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    sim = Simulator(SimConfig(venues=("binance", "coinbase"), assets=("BTC", "ETH"), cross=False,
                              port_base=0, seed=11, tls_cert=str(chain), tls_key=str(key)))
    with sim.running_in_thread():
        yield sim, ca_file


def test_records_over_wss_and_https_when_the_ca_is_trusted(tmp_path, tls_sim):
    sim, ca_file = tls_sim
    urls = sim.urls()
    assert urls["binance"].startswith("wss://") and urls["binance_rest"].startswith("https://")
    lake = tmp_path / "lake"
    cfg = write_config(tmp_path / "rec.toml", urls, ("binance", "coinbase"), lake, "tls",
                       flush_interval=0.3, maintain_every=0)
    p = start_recorder(cfg, "--duration", "8", log=tmp_path / "rec.log",
                       env={"SSL_CERT_FILE": str(ca_file)})
    assert p.wait(90) == 0, (tmp_path / "rec.log").read_text()[-3000:]
    lk = Lake(lake)
    trades = lk.read("trades")
    assert set(trades["venue"].unique()) == {"binance", "coinbase"}
    books = lk.read("book_updates")
    # Binance's book starts from the REST snapshot, fetched over https
    assert books.filter((pl.col("venue") == "binance") & pl.col("is_snapshot")).height > 0
    ev = lk.read("feed_events")
    assert ev.filter(pl.col("kind").is_in(["rest_error", "reconnect"])).height == 0, ev


def test_refuses_an_untrusted_certificate_and_says_why(tmp_path, tls_sim):
    sim, _ = tls_sim
    lake = tmp_path / "lake"
    cfg = write_config(tmp_path / "rec.toml", sim.urls(), ("coinbase",), lake, "tls-untrusted",
                       flush_interval=0.3, maintain_every=0)
    p = start_recorder(cfg, "--duration", "4", log=tmp_path / "rec.log")
    assert p.wait(90) == 0, (tmp_path / "rec.log").read_text()[-3000:]
    lk = Lake(lake)
    assert not lk.exists("trades") or lk.read("trades").height == 0
    ev = lk.read("feed_events").filter(pl.col("kind") == "reconnect")
    assert ev.height >= 1
    assert ev["detail"].str.contains("(?i)certificate.verify.failed").all(), ev["detail"].to_list()
