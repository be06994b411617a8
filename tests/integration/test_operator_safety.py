"""Operator safety (issue 15, items 14-18, 22, 23): what a new operator's mistakes and a
broken VPS must not be able to do: re-activate a bad parameter version, hide an unwritable
journal, relax trading anonymously, create an empty journal by looking at it, promote to
live on thresholds a partial table dropped, or blank a character out of every log line."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.daemon_helpers import EXAMPLE
from support.samples import write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from runbooks.cli import app

runner = CliRunner()


def _dta(url: str, *args: str, config: Path = EXAMPLE) -> object:
    return runner.invoke(app, [*args, "--config", str(config), "--journal-url", url])


# ------------------------------------------------------------------ 14: params rollback


def test_repeated_rollback_walks_back_and_never_reactivates_the_version_it_left(
        journal_url: str) -> None:
    j = Journal.open(journal_url)
    try:
        for lots in (0.1, 0.2, 0.3):  # v1, v2, v3, each activated in turn
            v = j.params.add_param_version({"guardrails": {"max_position_lots": lots}},
                                           None, "quant", f"size {lots}")
            j.params.add_param_event(v.version, "activate", "quant", f"size {lots}")
    finally:
        j.close()
    first = _dta(journal_url, "params", "rollback", "--reason", "v3 misbehaves",
                 "--operator", "ann")
    assert first.exit_code == 0, first.output  # type: ignore[attr-defined]
    assert "rolled back to v2" in first.output  # type: ignore[attr-defined]
    second = _dta(journal_url, "params", "rollback", "--reason", "v2 too",
                  "--operator", "ann")
    assert second.exit_code == 0, second.output  # type: ignore[attr-defined]
    # Before the fix this re-activated v3, the version the first rollback had left.
    assert "rolled back to v1" in second.output  # type: ignore[attr-defined]
    j = Journal.open(journal_url, migrate_schema=False)
    try:
        bad = {v.version for v in j.params.param_versions() if v.bad}
    finally:
        j.close()
    assert bad == {2, 3}
    third = _dta(journal_url, "params", "rollback", "--reason", "again", "--operator", "ann")
    assert third.exit_code == 5 and "known-good" in third.output  # type: ignore[attr-defined]
    to_bad = _dta(journal_url, "params", "rollback", "--to", "3", "--reason", "x",
                  "--operator", "ann")
    assert to_bad.exit_code == 5 and "marked bad" in to_bad.output  # type: ignore[attr-defined]


# ------------------------------------------------------------------ 23: secret scrubbing


@pytest.mark.parametrize("env", ["DTA_MT5_PASSWORD", "DTA_EXCHANGE_API_SECRET",
                                 "DTA_ALERT_WEBHOOK_URL"])
def test_a_secret_too_short_to_be_real_is_refused_without_echoing_it(
        env: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(env, "e")
    result = runner.invoke(app, ["config", "show", "--config", str(EXAMPLE)])
    assert result.exit_code == 2, result.output
    field = env.removeprefix("DTA_").lower()
    assert f"{field}: Value error, too short to be a real secret" in result.output
    assert "'e'" not in result.output


def test_log_lines_keep_their_letters_and_lose_whole_secrets(
        capsys: pytest.CaptureFixture[str]) -> None:
    import structlog

    from executor.log_setup import SecretScrubber, configure_logging

    with pytest.raises(ValueError, match="too short to be real"):
        SecretScrubber(["e", "a-long-enough-secret"])
    configure_logging("info", ["a-long-enough-secret"])
    structlog.get_logger("t").info("event seen", detail="key=a-long-enough-secret end")
    line = capsys.readouterr().err
    assert "event seen" in line and "key=********** end" in line
    assert "a-long-enough-secret" not in line


# ------------------------------------------------------------------ 22: promotion thresholds


def _config(tmp_path: Path, extra: str, name: str = "dta.toml") -> Path:
    path = tmp_path / name
    path.write_text(EXAMPLE.read_text() + "\n" + extra)
    return path


def test_a_partial_to_live_table_keeps_the_other_default_thresholds(tmp_path: Path) -> None:
    from executor.settings import load_settings

    gov = load_settings(_config(tmp_path, "[governance.to_live]\nmin_trades = 5\n")).governance
    assert gov.to_live.min_trades == 5
    assert gov.to_live.min_direction_agreement == 0.6 and gov.to_live.min_days == 20
    assert gov.to_live.max_drawdown_pct == 10.0 and gov.to_live.min_expectancy_r == 0.0
    assert gov.to_live.max_provider_error_rate == 0.05
    assert gov.to_shadow.min_days == 5  # the table not named keeps its defaults too


def test_promotion_to_live_without_a_shadow_record_is_refused(sqlite_url: str,
                                                               tmp_path: Path) -> None:
    cfg = _config(tmp_path, "[governance.to_live]\nmin_trades = 0\n")
    j = Journal.open(sqlite_url)
    j.clearances.record_clearance(account="paper-1", strategy="smc_ob_retest", action="promote",
                                  mode="shadow", person="desk", note="cleared for shadow")
    j.close()
    for role, person in (("trading", "tina"), ("compliance", "carl"), ("platform", "pia")):
        r = _dta(sqlite_url, "promote", "--to", "live", "--sign-off", role, "--person", person,
                 "--note", "signed", "--json", config=cfg)
    # Before the fix the partial table left only min_trades = 0: promoted, exit 0.
    assert r.exit_code == 5, r.output  # type: ignore[attr-defined]
    out = json.loads(r.stdout)  # type: ignore[attr-defined]
    assert out["promoted"] is False and out["missing_signoffs"] == []
    failing = {t["name"] for t in out["thresholds"] if not t["passed"]}
    assert {"shadow_record", "days", "decisions", "direction_agreement"} <= failing


def test_no_threshold_setting_waives_the_source_record(sqlite_url: str) -> None:
    from datetime import timedelta

    from executor.governance import assess

    j = Journal.open(sqlite_url)
    try:
        _, results, _ = assess(j, account="paper-1", strategy="smc_ob_retest", target="live",
                               thresholds={}, roles=[], contract_size=1.0,
                               initial_balance=1.0, pairing_window=timedelta(hours=1))
    finally:
        j.close()
    assert [r.name for r in results if not r.passed] == ["shadow_record"]


# ------------------------------------------------------------------ 15, 16: unwritable journal


@pytest.fixture
def unwritable_url(tmp_path: Path) -> Iterator[str]:
    """A migrated SQLite journal that cannot be written, as the issue found it. As root (the
    test machine), mode 0444 does not stop a write, so the file is made immutable (``chattr
    +i``, which stops root too); another user gets mode 0444. The fixture first checks
    with the sqlite3 module itself that a write really fails."""
    path = tmp_path / "journal.sqlite"
    url = f"sqlite:///{path}"
    Journal.open(url).close()
    if os.geteuid() == 0:
        made = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if made.returncode != 0:
            pytest.skip(f"chattr +i refused (needs CAP_LINUX_IMMUTABLE): {made.stderr!r}")
    else:
        path.chmod(0o444)
    try:
        conn = sqlite3.connect(path)
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("UPDATE alembic_version SET version_num = version_num")
            conn.commit()
        conn.close()
        yield url
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        else:
            path.chmod(0o644)


def test_doctor_finds_a_journal_it_cannot_write(unwritable_url: str) -> None:
    r = _dta(unwritable_url, "doctor", "--json")
    checks = {c["check"]: c for c in json.loads(r.stdout)["checks"]}  # type: ignore[attr-defined]
    # Before the fix: ok, "write lock taken and released" (a lock is not a write).
    assert checks["journal_writable"]["status"] == "fail"
    assert "readonly" in checks["journal_writable"]["detail"]
    assert checks["journal_schema"]["status"] == "ok"
    assert r.exit_code == 9  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", [
    ["run", "--data", "{data}"],
    ["trading-state", "halt", "--reason", "stop", "--operator", "ann"],
    ["params", "propose", "--reason", "smaller", "--set", "guardrails.max_position_lots=0.2",
     "--operator", "ann"],
])
def test_an_unwritable_journal_is_one_line_and_exit_3(command: list[str], unwritable_url: str,
                                                      tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 200)
    r = _dta(unwritable_url, *[str(data) if a == "{data}" else a for a in command])
    # Before the fix: exit 1 and a SQLAlchemy traceback.
    assert r.exit_code == 3, r.output  # type: ignore[attr-defined]
    lines = r.output.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("dta: ") and "readonly" in lines[0], lines


def test_exit_codes_follow_the_error_type() -> None:
    from sqlalchemy.exc import OperationalError

    from domain.errors import ConfigError, JournalError, LeaseError, VenueError
    from runbooks.common import exit_code_for

    assert exit_code_for(OperationalError("INSERT", {}, sqlite3.OperationalError("ro"))) == 3
    assert exit_code_for(sqlite3.OperationalError("disk I/O error")) == 3
    assert exit_code_for(JournalError("x")) == 3
    assert exit_code_for(ConfigError("x")) == 2
    assert exit_code_for(LeaseError("x")) == 5
    assert exit_code_for(VenueError("x")) == 1
    assert exit_code_for(KeyError("a bug")) is None  # a bug keeps its traceback


# ------------------------------------------------------------------ 18: no journal by accident

READS = [["status"], ["trace", "dta-none"], ["params", "list"], ["params", "show"],
         ["params", "diff", "1", "2"], ["approvals", "list"], ["approvals", "show", "1"],
         ["incidents", "list"], ["incidents", "show", "1"], ["providers", "status"],
         ["promote", "--history"], ["shadow", "report"], ["trading-state", "halt",
                                                          "--reason", "x"]]


@pytest.mark.parametrize("command", READS, ids=lambda c: " ".join(c[:2]))
def test_commands_never_create_a_journal_in_a_missing_directory(command: list[str],
                                                                 tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    r = _dta(f"sqlite:///{missing / 'journal.sqlite'}", *command)
    assert r.exit_code == 3, r.output  # type: ignore[attr-defined]
    assert "does not exist" in r.output and "dta db upgrade" in r.output  # type: ignore[attr-defined]
    # Before the fix the directory and an empty journal file were created.
    assert not missing.exists()


def test_doctor_reports_a_missing_journal_without_creating_it(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir"
    r = _dta(f"sqlite:///{missing / 'journal.sqlite'}", "doctor", "--json")
    assert r.exit_code == 9  # type: ignore[attr-defined]
    journal = next(c for c in json.loads(r.stdout)["checks"]  # type: ignore[attr-defined]
                   if c["check"] == "journal")
    assert journal["status"] == "fail" and "dta db upgrade" in journal["detail"]
    assert not missing.exists()


def test_reads_add_no_schema_to_an_empty_journal(tmp_path: Path) -> None:
    empty = tmp_path / "journal.sqlite"
    empty.touch()
    for command in [["status"], ["params", "list"], ["doctor"]]:
        r = _dta(f"sqlite:///{empty}", *command)
        assert r.exit_code in (3, 9), r.output  # type: ignore[attr-defined]
    assert empty.stat().st_size == 0


@pytest.mark.parametrize("mode", ["live", "shadow"])
def test_live_and_shadow_refuse_a_journal_db_upgrade_did_not_create(
        mode: str, journal_url: str) -> None:
    from sqlalchemy import create_engine, inspect

    r = _dta(journal_url, "run", "--mode", mode)
    # Before the fix: a fresh journal was migrated, then "cleared for paper" (exit 5).
    assert r.exit_code == 3, r.output  # type: ignore[attr-defined]
    assert "dta db upgrade" in r.output  # type: ignore[attr-defined]
    if journal_url.startswith("sqlite"):
        assert not Path(journal_url.removeprefix("sqlite:///")).exists()
    else:
        engine = create_engine(journal_url)
        try:
            with engine.connect() as conn:
                assert inspect(conn).get_table_names() == []
        finally:
            engine.dispose()
    assert _dta(journal_url, "db", "upgrade").exit_code == 0  # type: ignore[attr-defined]
    cleared = _dta(journal_url, "run", "--mode", mode)
    assert cleared.exit_code == 5 and "cleared for paper" in cleared.output  # type: ignore[attr-defined]


# ------------------------------------------------------------------ 17: identified operators

PEOPLE = ('[governance.people]\nann = ["operator", "trading"]\nbob = ["compliance"]\n'
          'pia = ["platform"]\n')


def _halted(url: str) -> None:
    assert _dta(url, "db", "upgrade").exit_code == 0  # type: ignore[attr-defined]
    r = _dta(url, "trading-state", "halt", "--reason", "news", "--operator", "ann")
    assert r.exit_code == 0, r.output  # type: ignore[attr-defined]


def _state(url: str) -> tuple[str, str | None]:
    j = Journal.open(url, migrate_schema=False, create=False)
    try:
        ts = j.trading_state.trading_state()
    finally:
        j.close()
    return ts.state, ts.operator


def test_relaxing_needs_a_named_operator_making_safer_does_not(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _halted(sqlite_url)
    monkeypatch.setenv("USER", "night-shift")
    anonymous = _dta(sqlite_url, "trading-state", "activate", "--reason", "looks fine")
    # Before the fix: released by $USER, exit 0.
    assert anonymous.exit_code == 2 and "--operator" in anonymous.output  # type: ignore[attr-defined]
    assert _state(sqlite_url) == ("HALTED", "ann")
    for command in (["params", "rollback", "--reason", "x"],
                    ["params", "activate", "1", "--reason", "x"],
                    ["params", "propose", "--reason", "x", "--set",
                     "guardrails.max_position_lots=0.2", "--activate"],
                    ["approvals", "approve", "1", "--note", "x"],
                    ["approvals", "reject", "1", "--note", "x"]):
        r = _dta(sqlite_url, *command)
        assert r.exit_code == 2 and "--operator" in r.output, (command, r.output)  # type: ignore[attr-defined]
    released = _dta(sqlite_url, "trading-state", "activate", "--reason", "checked",
                    "--operator", "ann")
    assert released.exit_code == 0, released.output  # type: ignore[attr-defined]
    reduced = _dta(sqlite_url, "trading-state", "reduce", "--reason", "exits only")
    assert reduced.exit_code == 0  # type: ignore[attr-defined]
    assert _state(sqlite_url) == ("REDUCING", "night-shift")  # recorded, not refused


def test_reduce_while_halted_needs_a_named_operator(
        sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the daemon state machine: HALTED -> REDUCING lets exits through, so it
    relaxes trading; `dta trading-state reduce` recorded it under ``$USER`` when nobody was
    named. From ACTIVE, reduce makes trading safer and still needs no name."""
    _halted(sqlite_url)
    monkeypatch.setenv("USER", "night-shift")
    monkeypatch.delenv("SUDO_USER", raising=False)
    anonymous = _dta(sqlite_url, "trading-state", "reduce", "--reason", "let exits out")
    # Before the fix: reduced by night-shift, exit 0.
    assert anonymous.exit_code == 2 and "--operator" in anonymous.output  # type: ignore[attr-defined]
    assert _state(sqlite_url) == ("HALTED", "ann")
    named = _dta(sqlite_url, "trading-state", "reduce", "--reason", "let exits out",
                 "--operator", "bob")
    assert named.exit_code == 0, named.output  # type: ignore[attr-defined]
    assert _state(sqlite_url) == ("REDUCING", "bob")


def test_with_people_configured_only_a_holder_of_the_role_relaxes(
        sqlite_url: str, tmp_path: Path) -> None:
    cfg = _config(tmp_path, PEOPLE)
    _halted(sqlite_url)
    for who in ("mallory", "bob"):  # unknown; known without the operator role
        r = _dta(sqlite_url, "trading-state", "activate", "--reason", "x", "--operator", who,
                 config=cfg)
        assert r.exit_code == 5, r.output  # type: ignore[attr-defined]
        assert who in r.output  # type: ignore[attr-defined]
    assert _state(sqlite_url)[0] == "HALTED"
    ok = _dta(sqlite_url, "trading-state", "activate", "--reason", "x", "--operator", "ann",
              config=cfg)
    assert ok.exit_code == 0, ok.output  # type: ignore[attr-defined]


def test_one_person_cannot_sign_two_roles(sqlite_url: str, tmp_path: Path) -> None:
    assert _dta(sqlite_url, "db", "upgrade").exit_code == 0  # type: ignore[attr-defined]

    def sign(role: str, person: str, cfg: Path = EXAMPLE) -> object:
        return _dta(sqlite_url, "promote", "--to", "shadow", "--sign-off", role, "--person",
                    person, "--note", "ok", "--json", config=cfg)

    first = sign("trading", "ann")
    assert json.loads(first.stdout)["missing_signoffs"] == ["compliance", "platform"]  # type: ignore[attr-defined]
    # Before the fix ann could sign compliance and platform too.
    twice = sign("compliance", "ann")
    assert twice.exit_code == 5 and "different person" in twice.output  # type: ignore[attr-defined]
    nameless = _dta(sqlite_url, "promote", "--to", "shadow", "--sign-off", "compliance",
                    "--note", "ok")
    assert nameless.exit_code == 2  # type: ignore[attr-defined]
    bound = _config(tmp_path, PEOPLE)
    not_theirs = sign("compliance", "pia", bound)
    assert not_theirs.exit_code == 5 and "does not hold" in not_theirs.output  # type: ignore[attr-defined]
    theirs = sign("compliance", "bob", bound)
    assert json.loads(theirs.stdout)["missing_signoffs"] == ["platform"]  # type: ignore[attr-defined]


def test_signoffs_recorded_by_one_person_count_once() -> None:
    from guardrails.promotion import missing_signoffs

    roles = ["trading", "compliance", "platform"]
    same = [("trading", "unknown"), ("compliance", "unknown"), ("platform", "unknown")]
    assert missing_signoffs(roles, same) == ["compliance", "platform"]
    assert missing_signoffs(roles, [("trading", "a"), ("compliance", "b"),
                                    ("platform", "c")]) == []


@pytest.mark.parametrize(("people", "message"), [
    ('ann = ["operator", "risk"]\nbob = ["trading", "compliance", "platform"]\n',
     "unknown role(s) 'risk'"),
    ('ann = ["operator", "trading"]\nbob = ["compliance"]\n', "nobody holds platform"),
])
def test_people_must_hold_known_roles_and_cover_every_role(people: str, message: str,
                                                           tmp_path: Path) -> None:
    cfg = _config(tmp_path, "[governance.people]\n" + people)
    r = runner.invoke(app, ["config", "show", "--config", str(cfg)])
    assert r.exit_code == 2 and message in r.output, r.output
