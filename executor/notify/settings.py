"""The ``[notifications]`` section: where messages go (apprise URLs, secrets), which
events, and how hard to try.

The URLs carry the services' tokens (a Telegram bot token, a Slack webhook's three, an SMTP
password), so they are ``SecretStr`` and come, like every secret, from the environment
(``DTA_NOTIFICATIONS__URLS``), ``.env`` or a systemd credential named ``notification_urls``
(``NotificationUrlsCredential``); one or more URLs separated by spaces, commas or new
lines, apprise's own list syntax (https://github.com/caronc/apprise/wiki/URLBasics). They
never appear in `dta config show` (masked), logs or messages.
"""

from __future__ import annotations

import os
import re
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, PydanticBaseSettingsSource

Event = Literal["approval_queued", "trading_state", "incident", "rollback", "fill",
                "daily_summary"]
Severity = Literal["info", "warning", "high", "critical"]
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "high": 2, "critical": 3}
CREDENTIAL_NAME = "notification_urls"  # the systemd credential file holding the URLs

_SEPARATORS = re.compile(r"[\s,]+")
_TOKEN_SPLIT = re.compile(r"[/?&=:@#,;]+")
_WORDISH = re.compile(r"[a-z.\-]+")  # a path word or a host name, not a token
MIN_TOKEN_LENGTH = 8  # as settings.MIN_SECRET_LENGTH: shorter parts are not scrubbed


def tokens(text: str) -> list[str]:
    return [unquote(t) for t in _TOKEN_SPLIT.split(text) if t]


def url_tokens(url: str) -> set[str]:
    """The URL and the parts of it that look like tokens: the password, a host part that
    is no host name (Telegram's ``tgram://{bot_token}/...``), and path and query parts
    that are not plain words (a webhook's path token). Parts shorter than
    ``MIN_TOKEN_LENGTH`` are left out: scrubbing them would blank ordinary text. apprise's
    own view of which parts are private is added where apprise is loaded
    (``executor.notify.sender.url_secrets``)."""
    parts = urlsplit(url)
    out = {url}
    userinfo, _at, host = parts.netloc.rpartition("@")
    if ":" in userinfo:
        out.add(unquote(userinfo.partition(":")[2]))
    candidates = [*tokens(parts.path), *tokens(parts.query)]
    if "." not in host:
        candidates += tokens(host)
    out |= {t for t in candidates if not _WORDISH.fullmatch(t)}
    return {t for t in out if len(t) >= MIN_TOKEN_LENGTH}


def _default_events() -> list[Event]:
    return ["approval_queued", "trading_state", "incident", "rollback", "daily_summary"]


class NotificationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    urls: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)
    # Where people open what a message is about: {console_url}/approvals/{id}.
    console_url: str = "http://127.0.0.1:8787"
    events: list[Event] = Field(default_factory=_default_events)
    # Incidents below this severity are not sent (they stay in the journal).
    min_severity: Severity = "warning"
    attempts: int = Field(default=5, ge=1, le=20)  # per message and destination
    backoff_seconds: float = Field(default=2.0, gt=0, le=600)  # doubles per attempt
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)  # per attempt (connect, read)
    queue_size: int = Field(default=1000, ge=1, le=100_000)
    daily_summary_at: time = time(21, 5)  # UTC, wall clock; a replay sends none

    @field_validator("urls", mode="before")
    @classmethod
    def _split(cls, v: Any) -> Any:
        """One string may hold several URLs (the environment, a credential file)."""
        if isinstance(v, SecretStr):
            v = v.get_secret_value()
        if isinstance(v, str):
            return [u for u in _SEPARATORS.split(v.strip()) if u]
        return v

    @field_validator("console_url")
    @classmethod
    def _no_trailing_slash(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"console_url {v!r} must start with http:// or https://")
        return v.rstrip("/")

    @field_validator("daily_summary_at")
    @classmethod
    def _utc(cls, v: time) -> time:
        if v.utcoffset():
            raise ValueError("daily_summary_at is UTC: give it without an offset")
        return v.replace(tzinfo=None)

    def url_values(self) -> list[str]:
        return [u.get_secret_value() for u in self.urls if u.get_secret_value()]

    def secret_values(self) -> list[str]:
        """For the log and Sentry scrubbers: each URL and each token in it."""
        return sorted({t for url in self.url_values() for t in url_tokens(url)})

    def wants(self, event: str) -> bool:
        return event in self.events


class NotificationUrlsCredential(PydanticBaseSettingsSource):
    """systemd credentials name one file per secret after its setting; the URLs live in a
    nested section, which pydantic-settings' secrets source does not reach, so this source
    reads ``$CREDENTIALS_DIRECTORY/notification_urls`` into ``notifications.urls``."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # the whole answer comes from __call__

    def __call__(self) -> dict[str, Any]:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            return {}
        path = Path(directory) / CREDENTIAL_NAME
        if not path.is_file():
            return {}
        return {"notifications": {"urls": path.read_text(encoding="utf-8").strip()}}
