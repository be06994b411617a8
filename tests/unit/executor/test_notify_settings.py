"""The ``[notifications]`` section: its URLs are secrets from the environment, ``.env`` or
a systemd credential, masked everywhere, and every token in them reaches the scrubbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import ConfigError
from executor.settings import load_settings

TELEGRAM = "tgram://123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100123456"
WEBHOOK = "jsons://desk:pa55-w0rd-xyz@hooks.example.com/in/T0k3nAbCdEf?:channel=desk"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("DTA_") or k == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)


def test_urls_from_the_environment_are_split_and_masked(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTA_NOTIFICATIONS__URLS", f"{TELEGRAM}, {WEBHOOK}")
    s = load_settings(None)
    assert s.notifications.url_values() == [TELEGRAM, WEBHOOK]
    shown = str(s.public_dict()) + repr(s)
    assert "AAHdq" not in shown and "pa55" not in shown and "T0k3n" not in shown
    hidden = s.secret_values()
    for token in (TELEGRAM, WEBHOOK, "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", "pa55-w0rd-xyz",
                  "T0k3nAbCdEf"):
        assert token in hidden, token
    assert "hooks.example.com" not in hidden  # a host name is no secret


def test_urls_from_a_systemd_credential_and_the_rest_from_toml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "notification_urls").write_text(f"{TELEGRAM}\n{WEBHOOK}\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    cfg = tmp_path / "dta.toml"
    cfg.write_text('[notifications]\nconsole_url = "https://desk.example/console/"\n'
                   'events = ["approval_queued", "fill"]\ndaily_summary_at = "06:30"\n')
    s = load_settings(cfg).notifications
    assert s.url_values() == [TELEGRAM, WEBHOOK]
    assert s.console_url == "https://desk.example/console"  # merged, not replaced
    assert s.wants("fill") and not s.wants("incident")
    assert str(s.daily_summary_at) == "06:30:00"
    monkeypatch.setenv("DTA_NOTIFICATIONS__URLS", WEBHOOK)  # the environment wins
    assert load_settings(cfg).notifications.url_values() == [WEBHOOK]


def test_a_bad_section_is_one_clear_error(tmp_path: Path) -> None:
    cfg = tmp_path / "dta.toml"
    cfg.write_text('[notifications]\nevents = ["approvals"]\nconsole_url = "desk:8787"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    text = str(err.value)
    assert "notifications.events.0" in text and "notifications.console_url" in text
