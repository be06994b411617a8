"""Side services of a running daemon: metrics exporter, notifications (apprise), Sentry.
Each is optional, configured from settings, and none can block or crash the trading
cycle."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import structlog

from executor.journal.store import Journal
from executor.metrics import Metrics
from executor.notify.hooks import Notifications, start_notifications
from executor.settings import Settings

log = structlog.get_logger("dta.services")


@dataclass
class Services:
    metrics: Metrics | None = None
    notifications: Notifications | None = None
    servers: list[Any] = field(default_factory=list)

    def close(self) -> None:
        if self.notifications is not None:
            self.notifications.close()
        for server in self.servers:
            with contextlib.suppress(Exception):  # best effort at exit
                server.shutdown()


def start_services(settings: Settings, journal: Journal) -> Services:
    obs = settings.observability
    services = Services()
    if obs.metrics_enabled:
        services.metrics = Metrics()
        services.servers.append(services.metrics.serve(obs.metrics_host, obs.metrics_port))
        log.info("metrics_serving", host=obs.metrics_host, port=obs.metrics_port)
    services.notifications = start_notifications(settings, journal)
    if services.metrics is not None:
        metrics = services.metrics
        journal.incidents.listeners.append(
            lambda _id, severity, _kind, _msg: metrics.incidents.labels(severity=severity).inc())
    if settings.sentry_dsn is not None:
        from executor.sentry_setup import init_sentry

        init_sentry(settings.sentry_dsn.get_secret_value(), secrets=settings.secret_values(),
                    identifiers=[settings.account], release=f"dta-executor@{_version()}",
                    environment=obs.sentry_environment)
    return services


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dta-executor")
    except PackageNotFoundError:
        return "dev"
