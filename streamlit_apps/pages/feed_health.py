"""Feed health: gaps, resyncs, reconnects, rejected messages, ingestion rate and the holes in
the trade tape per venue."""

from __future__ import annotations

import datetime as dt

import polars as pl
import streamlit as st

import lab

from lab import plots, tape
from streamlit_apps import compute, data, widgets

KINDS = [("gap", "Gaps"), ("resync", "Resyncs"), ("reconnect", "Reconnects"),
         ("rejected_message", "Rejected messages"), ("checksum_failure", "Checksum failures"),
         ("service_restart", "Service restarts")]  # the demo supervisor restarting a crashed service

st.title("Feed health")

with st.sidebar:
    minutes = st.number_input("Window (minutes)", min_value=1, max_value=7 * 24 * 60, value=60, step=5)
    bucket_s = st.selectbox("Ingestion bucket (seconds)", [1, 5, 10, 30, 60], index=2)
    stale_s = st.number_input("Stale after (seconds)", min_value=1.0, max_value=600.0, value=5.0, step=1.0)

widgets.health_strip(stale_s)

end = data.window_end("quotes", "trades", "feed_events")
start = end - dt.timedelta(minutes=int(minutes))
widgets.window_caption(start, end)
where = widgets.window_text(start, end)

counts = data.sql(
    "SELECT venue, kind, count(*) AS events FROM feed_events "
    "WHERE ts_local >= ? AND ts_local <= ? GROUP BY ALL ORDER BY venue, kind",
    [start, end],
)
totals = dict(counts.group_by("kind").agg(pl.col("events").sum()).iter_rows())
other = sum(v for k, v in totals.items() if k not in dict(KINDS))
widgets.metric_rows([{"label": label, "value": f"{totals.get(kind, 0):,}"} for kind, label in KINDS]
                    + [{"label": "Other events", "value": f"{other:,}"}], per_row=7)

left, right = st.columns(2)
if counts.is_empty():
    left.success("No feed events in this window.")
else:
    widgets.chart(left, plots.bar_figure(counts, x="venue", y="events", color="kind",
                                        title="Feed events per venue", height=340), key="events_bar",
                  what="feed events", where=where)
    right.subheader("Events per venue and kind")
    widgets.table(right, counts.pivot(on="kind", index="venue", values="events").fill_null(0), "feed_event_counts")


@st.cache_data(ttl=5, show_spinner=False, max_entries=8)
def _rates(root: str, start: dt.datetime, end: dt.datetime, every: str) -> pl.DataFrame:
    frames = []
    for table in ("quotes", "trades", "raw_messages"):
        if not data.lake().exists(table):
            continue
        # quotes/trades filter on ts_exchange; the rate is bucketed on receive time
        lf = lab.scan(table, lake=root, start=start, end=end)
        frames.append(compute.ingestion_rate(lf.select("venue", "ts_local"), every=every)
                      .with_columns(table=pl.lit(table)))
    if not frames:
        return pl.DataFrame()
    return data.retry_read(lambda: pl.concat(frames).collect())


rates = _rates(data.lake_root(), start, end, f"{int(bucket_s)}s")
st.subheader("Ingestion rate")
if rates.is_empty():
    widgets.no_data("quotes, trades or raw messages received", where)
else:
    per_venue = rates.filter(pl.col("table") != "raw_messages").group_by("venue", "ts") \
        .agg(pl.col("rows_per_s").sum()).sort("venue", "ts")
    # the newest bucket is still filling: leave it out so the rate does not seem to collapse
    per_venue = per_venue.filter(pl.col("ts") < per_venue["ts"].max()) if per_venue["ts"].n_unique() > 1 \
        else per_venue
    last_min = per_venue.filter(pl.col("ts") >= per_venue["ts"].max() - dt.timedelta(seconds=60)) \
        .group_by("venue").agg(pl.col("rows_per_s").mean()).sort("venue")
    widgets.metric_rows([{"label": f"{r['venue']} rows/s", "value": f"{r['rows_per_s']:,.1f}",
                          "help": "quotes + trades, last minute"} for r in last_min.iter_rows(named=True)])
    widgets.chart(st, plots.lines_figure(per_venue, x="ts", y="rows_per_s", by=("venue",),
                                       title="Rows per second (quotes + trades) per venue",
                                       xlabel="received (UTC)", ylabel="rows/s", height=340), key="rate_lines",
                  what="quotes and trades received", where=where)



@st.cache_data(ttl=5, show_spinner=False, max_entries=8)
def _holes(root: str) -> pl.DataFrame:
    return data.retry_read(tape.lake_ranges, root)


holes = tape.overlapping(_holes(data.lake_root()), start, end)
st.subheader("Holes in the trade tape")
if holes.is_empty():
    st.success(f"No holes in the trade tape in {where}: no recorder downtime, disconnect or trade-id gap "
               "recorded.")
else:
    st.caption("Ranges with no live trades per venue and symbol, and why: down (no recorder running), "
               "disconnected, backfilled (the trades came from the venue's REST history), not recoverable "
               "(the venue no longer served them). From the recorders' feed events (lab.tape.ranges).")
    widgets.metric_rows([{"label": w.capitalize(), "value": f"{holes.filter(pl.col('why') == w).height:,}"}
                         for w in tape.WHY]
                        + [{"label": "Trades not recoverable", "value": f"{holes['trades_missing'].sum() or 0:,}"}],
                        per_row=5)
    widgets.table(st, holes.sort("start", descending=True, nulls_last=True), "tape_holes", height=240)

recent = data.sql(
    "SELECT ts_local, venue, symbol, kind, detail FROM feed_events "
    "WHERE ts_local >= ? AND ts_local <= ? ORDER BY ts_local DESC LIMIT 200",
    [start, end],
)
st.subheader("Latest events")
if recent.is_empty():
    widgets.no_data("feed events", where)
else:
    widgets.table(st, recent, "feed_events", height=280)

status = data.recorder_status()
st.subheader("Recorders")
if status:
    st.caption("From the recorders' status files ($LAB_DATA/run/recorder-*.json), counters since each started.")
    widgets.table(st, pl.DataFrame(status, strict=False), "recorder_status")
else:
    st.caption("No recorder status files under $LAB_DATA/run (no recorder running on this machine).")
