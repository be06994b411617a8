"""Canonical JSON of a decision, for the journal, replay comparison and `dta trace`.

Keys sorted, no whitespace, floats as Python's shortest repr: the same decision always
serializes to the same bytes. ``timing=False`` leaves out wall-clock measurements
(latencies), which describe the run rather than the decision; a replay compares
decisions that way.
"""

from __future__ import annotations

import json
from typing import Any

from domain import Decision, Signal
from ensemble.telemetry import ProviderCall


def signal_dict(s: Signal, *, timing: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": s.provider, "direction": s.direction.value,
                           "confidence": s.confidence, "rationale": s.rationale,
                           "tags": list(s.tags), "abstain_reason": s.abstain_reason}
    if timing:
        out["latency_ms"] = s.latency_ms
    return out


def decision_dict(d: Decision, *, timing: bool = True) -> dict[str, Any]:
    p = d.proposal
    return {
        "proposal": {"strategy": p.strategy, "symbol": p.symbol, "timeframe": p.timeframe,
                     "bar_time": p.bar_time.isoformat(), "direction": p.direction.value,
                     "entry": p.entry, "stop": p.stop, "target": p.target,
                     "reason": p.reason, "tags": list(p.tags)},
        "direction": d.direction.value,
        "confidence": d.confidence,
        "agreement": d.agreement,
        "voters": d.voters,
        "signals": [signal_dict(s, timing=timing) for s in d.signals],
        "contributions": [[n, c] for n, c in d.contributions],
        "params_hash": d.params_hash,
        "calls": [c.to_dict(timing=timing) if isinstance(c, ProviderCall) else repr(c)
                  for c in d.calls],
    }


def decision_json(d: Decision, *, timing: bool = True) -> str:
    return json.dumps(decision_dict(d, timing=timing), sort_keys=True,
                      separators=(",", ":"), ensure_ascii=False, allow_nan=False)
