"""Prometheus metrics, served on 127.0.0.1 by default (scrape through an SSH tunnel or a
local agent; never expose the trading VPS's metrics port publicly).

A registry per daemon instead of the global default keeps tests and several executors in
one process independent.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

STATES = ("ACTIVE", "REDUCING", "HALTED")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.cycle_seconds = Histogram(
            "dta_cycle_seconds", "Duration of one scheduler cycle", registry=r,
            buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5))
        self.bars_processed = Counter("dta_bars_processed", "Bars through the cycle",
                                      ["symbol", "timeframe"], registry=r)
        self.bars_rejected = Counter("dta_bars_rejected", "Bars rejected by the validator",
                                     ["reason"], registry=r)
        self.decisions = Counter("dta_decisions", "Ensemble decisions", registry=r)
        self.vetoes = Counter("dta_vetoes", "Failed guardrail checks", ["check"], registry=r)
        self.orders = Counter("dta_orders", "Orders by state after submission", ["state"],
                              registry=r)
        self.provider_latency = Histogram(
            "dta_provider_latency_seconds", "Provider call latency", ["provider"], registry=r,
            buckets=(0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.provider_calls = Counter("dta_provider_calls", "Provider calls by outcome",
                                      ["provider", "outcome"], registry=r)
        self.provider_cost = Counter("dta_provider_cost", "Provider cost (account currency)",
                                     ["provider"], registry=r)
        self.trading_state = Gauge("dta_trading_state", "1 for the current trading state",
                                   ["state"], registry=r)
        self.incidents = Counter("dta_incidents", "Incidents opened", ["severity"], registry=r)

    def set_state(self, current: str) -> None:
        for state in STATES:
            self.trading_state.labels(state=state).set(1.0 if state == current else 0.0)

    def provider_call(self, call: Any) -> None:
        provider = str(getattr(call, "provider", "?"))
        outcome = getattr(call, "outcome", "unknown")
        self.provider_calls.labels(provider=provider,
                                   outcome=str(getattr(outcome, "value", outcome))).inc()
        self.provider_latency.labels(provider=provider).observe(
            float(getattr(call, "latency_ms", 0.0)) / 1000.0)
        cost = float(getattr(call, "cost", 0.0))
        if cost:
            self.provider_cost.labels(provider=provider).inc(cost)

    def serve(self, host: str, port: int) -> Any:
        """Start the HTTP exporter on a daemon thread; returns the server."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        return server
