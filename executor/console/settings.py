"""``[console]``: where the operator console listens and who may sign in.

Kept apart from ``executor.settings`` (and free of web imports) so the daemon's settings
do not grow with the console's. Passwords are argon2 hashes (``dta console hash-password``),
never plain text; a hash or the session secret may instead come from systemd credentials
(``$CREDENTIALS_DIRECTORY/console_password_<user>``, ``console_session_secret``).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

# Console roles: every signed-in user reads (viewer); an analyst decides approvals; an
# operator changes the trading state, parameters and providers. The promotion gate's
# roles ([governance] roles) may be listed too: they are the person's, checked again by
# ``executor.governance.refusal`` when [governance.people] binds names to roles.
CONSOLE_ROLES = ("viewer", "analyst", "operator")


class ConsoleUser(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # An argon2 encoded hash ("$argon2id$..."); None: read from the credentials directory.
    password_hash: SecretStr | None = None
    roles: list[str] = Field(default_factory=lambda: ["viewer"])

    @field_validator("password_hash")
    @classmethod
    def _argon2(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith("$argon2"):
            raise ValueError("must be an argon2 hash (make one with `dta console "
                             "hash-password`), never a plain password")
        return v


class ConsoleSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = "127.0.0.1"  # reached through an SSH tunnel; other binds need TLS
    port: int = Field(default=8787, ge=1, le=65535)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    public_url: str | None = None  # how people reach it (links in notifications)
    users: dict[str, ConsoleUser] = Field(default_factory=dict)
    session_secret: SecretStr | None = None  # None: credentials file, else random per start
    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    # Failed sign-ins allowed per client address and per user name within the window.
    login_attempts: int = Field(default=5, ge=1, le=1000)
    login_window_seconds: float = Field(default=300.0, gt=0)

    @field_validator("users")
    @classmethod
    def _names(cls, v: dict[str, ConsoleUser]) -> dict[str, ConsoleUser]:
        for name in v:
            if not name.strip() or name != name.strip():
                raise ValueError(f"console.users: bad user name {name!r}")
        return v

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None and self.tls_key is not None

    def url(self) -> str:
        """The console's address as people reach it (``public_url``, else the bind)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        scheme = "https" if self.tls else "http"
        return f"{scheme}://{self.host}:{self.port}"
