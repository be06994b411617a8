"""Serving the console: the bind rule and uvicorn.

Loopback by default (reached through an SSH tunnel: ``ssh -L 8787:127.0.0.1:8787 vps``).
Any other address is refused unless TLS is configured: a session cookie and a password
must never cross a network in clear text. The console is a process of its own: it opens
the journal the daemon writes, never the daemon.
"""

from __future__ import annotations

from domain.errors import ConfigError
from executor.brokers.mt5_bridge import is_loopback
from executor.settings import Settings


def check_bind(settings: Settings, host: str) -> None:
    """ConfigError (exit 2) for a non-loopback bind without TLS, or TLS files missing."""
    console = settings.console
    if console.tls_cert is None or console.tls_key is None:
        if not is_loopback(host):
            raise ConfigError(f"console: refusing to listen on {host} without TLS (set "
                              "console.tls_cert and console.tls_key, or bind 127.0.0.1 "
                              "and use an SSH tunnel)")
        return
    for path in (console.tls_cert, console.tls_key):
        if not path.is_file():
            raise ConfigError(f"console: TLS file {path} does not exist")


def serve(settings: Settings, *, host: str, port: int, journal_url: str | None = None) -> None:
    """Check the bind and the journal, build the app (which checks the users) and run
    uvicorn until a signal; every refusal comes before anything listens."""
    import uvicorn

    from executor.console.app import create_app
    from executor.journal.store import Journal
    from executor.log_setup import configure_logging

    check_bind(settings, host)
    secrets = [*settings.secret_values()]
    if settings.console.session_secret is not None:
        secrets.append(settings.console.session_secret.get_secret_value())
    configure_logging(settings.log_level, secrets)
    # The journal must exist with its schema (JournalError, exit 3): a mistyped URL is
    # said at start, not on the first page.
    Journal.open(journal_url or settings.journal.url, migrate_schema=False,
                 create=False).close()
    app = create_app(settings, journal_url)
    console = settings.console
    uvicorn.run(app, host=host, port=port, log_level="warning", proxy_headers=False,
                server_header=False, timeout_graceful_shutdown=2,
                ssl_certfile=str(console.tls_cert) if console.tls else None,
                ssl_keyfile=str(console.tls_key) if console.tls else None)
