"""Console settings with users, and a signed-in test client (FastAPI's ``TestClient``,
httpx underneath: https://www.starlette.io/testclient/)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
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


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_console(config: Any, port: int, log: Any) -> Any:
    """`dta console` as an operator starts it, in a process of its own (this checkout's
    code); returns the process once it listens on ``port``."""
    import os
    import socket
    import subprocess
    import sys
    import time

    from support.samples import ROOT

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "runbooks.cli", "console", "--config",
                             str(config), "--port", str(port)], env=env, cwd=str(ROOT),
                            stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the console exited: {log.read_text()}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        time.sleep(0.1)
    proc.terminate()
    raise AssertionError(f"the console did not listen: {log.read_text()}")


def console_config(path: Any, url: str, users: dict[str, list[str]], extra: str = "") -> Any:
    """A settings file for `dta console`: the journal, ``extra`` TOML lines for the
    ``[console]`` table, and ``users`` (name -> console roles) with PASSWORD."""
    lines = [f'[journal]\nurl = "{url}"\n', f"[console]\n{extra}"]
    for name, roles in users.items():
        lines.append(f'[console.users.{name}]\npassword_hash = "{password_hash()}"\n'
                     f"roles = {roles!r}\n".replace("'", '"'))
    path.write_text("\n".join(lines))
    return path


@contextmanager
def console_in_browser(config: Any, log: Any, chromium: str) -> Iterator[tuple[str, Any]]:
    """`dta console` (``start_console``) on a free port and Chromium driven by Playwright
    (https://playwright.dev/python/docs/api/class-browser); yields (base URL, browser)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    proc = start_console(config, port, log)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium)
            try:
                yield f"http://127.0.0.1:{port}", browser
            finally:
                browser.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def signed_in_page(browser: Any, base: str, name: str, *, wait_ms: int = 5000) -> Any:
    """A page in a browser context of its own (downloads allowed), signed in as ``name``
    through the sign-in form."""
    page = browser.new_context(viewport={"width": 1400, "height": 1000},
                               accept_downloads=True).new_page()
    page.goto(f"{base}/login")
    page.fill("input[name=username]", name)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_selector("header.top nav", timeout=wait_ms)
    return page
