"""The data service (port 50053): the lake and the live bus over Arrow Flight.

Server: :class:`DataService` (``lab serve``). Client: :func:`connect` (also
``lab.connect("grpc://host:50053")``) and :func:`subscribe` (also
``lab.subscribe``). See docs/CONTRACTS.md "Data service".
"""

from __future__ import annotations

from lab.service.client import RemoteConnection, RemoteResult, Subscription, connect, is_remote, subscribe
from lab.service.server import DataService, ServiceConfig, live_ticket, resolve_token, token_path

__all__ = ["DataService", "ServiceConfig", "RemoteConnection", "RemoteResult", "Subscription", "connect",
           "subscribe", "is_remote", "live_ticket", "resolve_token", "token_path"]
