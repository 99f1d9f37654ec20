"""``lab serve``: the data service on 127.0.0.1:50053 (remote SQL + live streams over Arrow Flight).

Clients: ``lab.connect("grpc://host:50053", token=...)``, any ADBC / Flight SQL
client, ``lab.subscribe("quotes", url="grpc://host:50053")``, and ``lab arbitrage``, ``lab risk``,
``lab paper`` on another machine with ``--bus grpc://host:50053``. The token comes from
``$LAB_SERVICE_TOKEN``, else ``$LAB_DATA/run/service_token`` (generated, mode 0600).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from lab.errors import ConfigError, ServiceError

HELP = "serve the lake (Flight SQL) and live rows (Flight streams) on 127.0.0.1:50053, token required"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--lake", help="lake directory (default $LAB_LAKE, else $LAB_DATA/lake)")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    p.add_argument("--port", type=int, default=50053, help="port (0: any free port)")
    p.add_argument("--tls-cert", help="PEM certificate chain: serve grpc+tls://")
    p.add_argument("--tls-key", help="PEM private key for --tls-cert")
    p.add_argument("--bus", default="ws://127.0.0.1:50052",
                   help="live bus the streams come from ('none': no live streams)")
    p.add_argument("--query-timeout", type=float, default=60.0, help="seconds a query may run")
    p.add_argument("--max-rows", type=int, default=10_000_000, help="most rows one result may have")
    p.add_argument("--max-mb", type=float, default=2048, help="most MiB one result may have")
    p.add_argument("--max-queries", type=int, default=4, help="queries running at once (others wait)")
    p.add_argument("--max-streams", type=int, default=32, help="live streams at once")
    p.add_argument("--batch-rows", type=int, default=262_144,
                   help="rows per Arrow batch of a result")


def run(args: argparse.Namespace) -> int:
    import os

    from lab.lake import data_dir
    from lab.service.server import DataService, ServiceConfig, resolve_token, token_path

    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    for f in (args.tls_cert, args.tls_key):
        if f and not os.path.isfile(f):
            raise ConfigError(f"no such file: {f}")
    lake = args.lake or os.environ.get("LAB_LAKE") or str(data_dir() / "lake")
    token = resolve_token(create=True)
    cfg = ServiceConfig(
        lake=lake, token=token or "", host=args.host, port=args.port, tls_cert=args.tls_cert,
        tls_key=args.tls_key, bus_url=None if args.bus in ("", "none") else args.bus,
        query_timeout_s=args.query_timeout, max_rows=args.max_rows, max_bytes=int(args.max_mb * 2**20),
        max_queries=args.max_queries, max_streams=args.max_streams, batch_rows=args.batch_rows)
    try:
        svc = DataService(cfg)
    except Exception as e:  # noqa: BLE001 - a port in use, a bad certificate
        raise ServiceError(f"cannot start on {args.host}:{args.port}: {str(e).splitlines()[0]}") from None
    where = "$LAB_SERVICE_TOKEN" if os.environ.get("LAB_SERVICE_TOKEN") else str(token_path())
    print(f"data service on {svc.url} (lake {lake}; token in {where}; "
          f"live bus {cfg.bus_url or 'off'})", flush=True)
    done = threading.Event()

    def stop(*_: object) -> None:
        done.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    done.wait()  # the server already serves (pyarrow starts it on construction)
    svc.shutdown()
    print("data service stopped", file=sys.stderr, flush=True)
    return 0
