"""Console settings with users, and a signed-in test client (FastAPI's ``TestClient``,
httpx underneath: https://www.starlette.io/testclient/)."""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from executor.console.security import hash_password
from executor.settings import Settings, load_settings

PASSWORD = "correct-horse-battery"
# name -> console roles; ``people``: the [governance.people] binding, when a test wants it.
USERS = {"ann": ["analyst", "operator"], "ana": ["analyst"], "vic": ["viewer"],
         "ops": ["operator"]}


@cache
def password_hash(password: str = PASSWORD) -> str:
    return hash_password(password)


def console_settings(url: str, *, users: dict[str, list[str]] | None = None,
                     **overrides: Any) -> Settings:
    console = {"users": {name: {"password_hash": password_hash(), "roles": roles}
                         for name, roles in (USERS if users is None else users).items()},
               **overrides.pop("console", {})}
    return load_settings(None, journal={"url": url}, console=console, **overrides)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: Any, name: str, password: str = PASSWORD) -> Any:
    """Sign ``client`` in as ``name``; returns the sign-in response."""
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"username": name, "password": password,
                                       "csrf_token": token}, follow_redirects=False)
