"""Who may use the console and what each may do: argon2 passwords, the login rate
limit, CSRF tokens and role checks.

The session itself is Starlette's ``SessionMiddleware`` (an itsdangerous-signed cookie,
HttpOnly, SameSite=Strict, Secure under TLS): it holds the user name, the sign-in time
and the CSRF token, nothing else. Every state-changing request carries that token (a form
field, or the ``X-CSRF-Token`` header htmx sends), compared in constant time.
"""

from __future__ import annotations

import hmac
import os
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from domain.errors import ConfigError
from executor.console.settings import CONSOLE_ROLES, ConsoleSettings
from executor.governance import refusal
from executor.settings import OPERATOR_ROLE, GovernanceSettings

_HASHER = PasswordHasher()
# Verified against when the user does not exist, so an unknown name costs the same time
# as a wrong password and does not reveal which names exist.
_DUMMY_HASH = _HASHER.hash(secrets.token_urlsafe(16))
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"


def hash_password(password: str) -> str:
    """An argon2id hash (argon2-cffi's RFC 9106 low-memory defaults) for ``[console.users]``."""
    if len(password) < 8:
        raise ConfigError("a console password needs at least 8 characters")
    return _HASHER.hash(password)


@dataclass(frozen=True, slots=True)
class User:
    name: str
    roles: frozenset[str]
    password_hash: str


def users_from(console: ConsoleSettings, gov: GovernanceSettings,
               credentials_dir: str | None = None) -> dict[str, User]:
    """The users who may sign in, each hash from the settings or, as systemd passes
    secrets, from ``$CREDENTIALS_DIRECTORY/console_password_<name>``. A user without a
    hash, or with a role nobody defined, refuses the start (ConfigError)."""
    creds = credentials_dir if credentials_dir is not None else os.environ.get(
        "CREDENTIALS_DIRECTORY")
    known = {*CONSOLE_ROLES, *gov.roles, OPERATOR_ROLE}
    out: dict[str, User] = {}
    for name, user in console.users.items():
        unknown = sorted(set(user.roles) - known)
        if unknown:
            raise ConfigError(f"console.users.{name}: unknown role(s) {', '.join(unknown)} "
                              f"(roles: {', '.join(sorted(known))})")
        encoded = user.password_hash.get_secret_value() if user.password_hash else None
        if encoded is None and creds:
            path = Path(creds) / f"console_password_{name}"
            encoded = path.read_text(encoding="utf-8").strip() if path.is_file() else None
        if not encoded or not encoded.startswith("$argon2"):
            raise ConfigError(f"console.users.{name}: no argon2 password hash (set "
                              "password_hash or the credential console_password_"
                              f"{name}; make one with `dta console hash-password`)")
        out[name] = User(name, frozenset(user.roles) | {"viewer"}, encoded)
    if not out:
        raise ConfigError("console: no users configured ([console.users.NAME] with "
                          "password_hash and roles): the console always asks for a login")
    return out


def session_secret(console: ConsoleSettings, credentials_dir: str | None = None) -> str:
    """The cookie-signing key: settings, then the credential ``console_session_secret``,
    else a random one (sessions then end when the console restarts)."""
    if console.session_secret is not None:
        return console.session_secret.get_secret_value()
    creds = credentials_dir if credentials_dir is not None else os.environ.get(
        "CREDENTIALS_DIRECTORY")
    if creds and (Path(creds) / "console_session_secret").is_file():
        return (Path(creds) / "console_session_secret").read_text(encoding="utf-8").strip()
    return secrets.token_urlsafe(32)


def verify(users: dict[str, User], name: str, password: str) -> User | None:
    user = users.get(name)
    try:
        _HASHER.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return user


class LoginLimiter:
    """Failed sign-ins per client address and per user name in a sliding window: past
    ``attempts`` either key is refused until its oldest failure leaves the window (a
    guesser cannot spread over names, nor over addresses)."""

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts, self.window_s = attempts, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        q = self._failures.setdefault(key, deque())
        while q and now - q[0] >= self.window_s:
            q.popleft()
        return q

    def blocked(self, client: str, user: str) -> bool:
        now = time.monotonic()
        with self._lock:
            return any(len(self._recent(k, now)) >= self.attempts
                       for k in (f"ip:{client}", f"user:{user}"))

    def failed(self, client: str, user: str) -> None:
        now = time.monotonic()
        with self._lock:
            for k in (f"ip:{client}", f"user:{user}"):
                self._recent(k, now).append(now)

    def succeeded(self, user: str) -> None:
        with self._lock:
            self._failures.pop(f"user:{user}", None)


def new_csrf_token() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(expected: str | None, given: str | None) -> bool:
    return bool(expected) and bool(given) and hmac.compare_digest(str(expected), str(given))


def action_refusal(user: User, console_role: str, gov: GovernanceSettings,
                   governance_role: str | None = None) -> str | None:
    """Why ``user`` may not take an action needing ``console_role`` (None: they may).
    With ``governance_role`` the person is checked as the CLI checks ``--operator``
    (``governance.refusal``: [governance.people] binds names to roles), so the console
    and the CLI refuse the same person for the same act."""
    if console_role not in user.roles:
        held = ", ".join(sorted(user.roles))
        return f"{user.name} does not hold the console role {console_role!r} (holds: {held})"
    if governance_role is not None:
        return refusal(gov, user.name, governance_role)
    return None
