"""Risk: positions, marks, PnL (linear and inverse), exposure, VaR/ES, drawdown, limits.

Pure functions in :mod:`lab.risk.core`; the live monitor (``lab risk``) in
:mod:`lab.risk.live` writes a :func:`snapshot` to ``risk_snapshots`` every second.
"""

from __future__ import annotations

from lab.risk.core import (
    POSITION_SCHEMA,
    Limits,
    Position,
    RiskConfig,
    check_limits,
    drawdown,
    ewma_cov,
    exposure,
    load_positions,
    load_risk_config,
    mark_positions,
    marks,
    positions_frame,
    positions_from_paper,
    returns_matrix,
    snapshot,
    var_es,
)

__all__ = [
    "POSITION_SCHEMA", "Limits", "Position", "RiskConfig", "check_limits", "drawdown",
    "ewma_cov", "exposure", "load_positions", "load_risk_config", "mark_positions", "marks",
    "positions_frame", "positions_from_paper", "returns_matrix", "snapshot", "var_es",
]
