"""Settings sources, precedence, secrets and the content hash."""

from __future__ import annotations

from pathlib import Path

import pytest

from domain.errors import ConfigError
from executor.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import os

    for k in list(os.environ):
        if k.startswith("DTA_") or k == "CREDENTIALS_DIRECTORY":
            monkeypatch.delenv(k)
    monkeypatch.chdir(tmp_path)  # no stray .env or config/dta.toml


def test_precedence_env_over_dotenv_over_credentials_over_toml(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "dta.toml"
    cfg.write_text('account = "from-toml"\nlog_level = "error"\n[guardrails]\n'
                   'max_position_lots = 2.0\n[guardrails.consensus]\nmin_agreement = 3\n')
    s = load_settings(cfg)
    assert (s.account, s.log_level, s.guardrails.max_position_lots) == ("from-toml", "error", 2.0)

    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "openai_api_key").write_text("sk-from-credentials")
    (creds / "account").write_text("from-credentials")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(creds))
    s = load_settings(cfg)
    assert s.openai_api_key is not None
    assert s.openai_api_key.get_secret_value() == "sk-from-credentials"
    assert s.account == "from-credentials"

    (tmp_path / ".env").write_text(
        "DTA_ACCOUNT=from-dotenv\nDTA_GUARDRAILS__CONSENSUS__MIN_AGREEMENT=2\n")
    s = load_settings(cfg)
    assert s.account == "from-dotenv"
    assert s.guardrails.consensus.min_agreement == 2
    assert s.guardrails.max_position_lots == 2.0  # nested keys merge, not replace

    monkeypatch.setenv("DTA_ACCOUNT", "from-env")
    assert load_settings(cfg).account == "from-env"
    assert load_settings(cfg, account="from-cli").account == "from-cli"


def test_content_hash_is_stable_and_ignores_secret_values(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    a = tmp_path / "a.toml"
    b = tmp_path / "b.toml"
    a.write_text('mode = "paper"\naccount = "x"\n[guardrails]\nmax_spread = 0.001\n'
                 'max_position_lots = 1.0\n')
    b.write_text('account = "x"\n[guardrails]\nmax_position_lots = 1.0\nmax_spread = 0.001\n')
    ha, hb = load_settings(a).content_hash, load_settings(b).content_hash
    assert ha == hb and len(ha) == 16
    monkeypatch.setenv("DTA_OPENAI_API_KEY", "sk-one-0123456789")
    h1 = load_settings(a).content_hash
    monkeypatch.setenv("DTA_OPENAI_API_KEY", "sk-two-0123456789")
    assert load_settings(a).content_hash == h1  # value does not enter, presence does
    assert h1 != ha
    assert load_settings(a, account="y").content_hash != ha


def test_secrets_never_in_public_dict_or_errors(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DTA_MT5_PASSWORD", "hunter2-very-secret")
    s = load_settings(None)
    assert "hunter2-very-secret" not in str(s.public_dict())
    assert "hunter2-very-secret" not in repr(s)
    assert s.secret_values() == ["hunter2-very-secret"]
    monkeypatch.setenv("DTA_MT5_PASSWORD", "")
    cfg = tmp_path / "bad.toml"
    cfg.write_text('mt5_password = 12\nmode = "nope"\n')
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert "mode" in str(err.value)


@pytest.mark.parametrize(("toml", "field"), [
    ('mode = "papr"', "mode"),
    ('log_level = "loud"', "log_level"),
    ('[journal]\nbatch_bars = -1', "journal.batch_bars"),
    ('[data]\ntimeframe = "M7x"', "data.timeframe"),
    ('[data]\nfeed = "mt6"', "data.feed"),
    ('[strategy]\nname = "magic"', "strategy.name"),
    ('[[ensemble.providers]]\nname = "a"\nkind = "oracle"', "ensemble.providers.0.kind"),
    ('[guardrails.consensus]\nmin_confidence = 1.5', "guardrails.consensus.min_confidence"),
    ('[guardrails]\ntrading_windows = ["7-16"]', "guardrails.trading_windows"),
    ('[guardrails]\nnews_blackouts = [["2023-01-01T10:00:00", "2023-01-01T11:00:00"]]',
     "guardrails.news_blackouts.0.0"),
    ('[paper]\norder_volume_lots = 0', "paper.order_volume_lots"),
    ('[scheduler]\nsettle_delay_seconds = -1', "scheduler.settle_delay_seconds"),
])
def test_each_invalid_field_is_named(tmp_path: Path, toml: str, field: str) -> None:
    cfg = tmp_path / "dta.toml"
    cfg.write_text(toml + "\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg)
    assert f"  {field}:" in str(err.value)
    assert str(cfg) in str(err.value)


def test_default_config_path_search(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / "dta.toml").write_text('account = "found-default"\n')
    assert load_settings(None).account == "found-default"
    other = tmp_path / "other.toml"
    other.write_text('account = "from-dta-config"\n')
    monkeypatch.setenv("DTA_CONFIG", str(other))
    assert load_settings(None).account == "from-dta-config"
