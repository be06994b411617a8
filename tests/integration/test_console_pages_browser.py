"""The console's Overview, Providers, Parameters, Incidents and Replays pages in a real
browser (Playwright driving Debian's Chromium), over a journal the real daemon filled: a
replay on the bundled bars, a harmful parameter version an operator activated, and the
automatic rollback it caused (an incident, REDUCING, the rollback's evidence); plus a
replay report below the console's reports directory.

One console process (`dta console`) and one browser for the module; the tests run in
order on the shared journal. Each action is taken as a person takes it (a form, a
button), then found in the journal with the signed-in person; a viewer is offered no
controls and a forged request of theirs is refused. Screenshots of every page go to
$DTA_SCREENSHOT_DIR when set, else pytest's tmp dir. Waits are generous functional
bounds (5 s), not timings.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.console import console_config, console_in_browser, signed_in_page
from support.daemon_helpers import replay
from support.samples import ROOT, write_sample_head
from typer.testing import CliRunner

from executor.journal.store import Journal
from runbooks.cli import app

CHROMIUM = shutil.which("chromium")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")]
WAIT_MS = 20_000  # a bound for a loaded 2-core CI, not a timing: make bench times it
EXAMPLE = ROOT / "config" / "dta.example.toml"
PG_URL = os.environ.get("DTA_TEST_DATABASE_URL")
TABLE = f"dta_matrix_pages_{secrets.token_hex(4)}"  # this run's own table


@dataclass
class Scene:
    url: str
    base: str
    shots: Path
    browser: Any

    def journal(self) -> Journal:
        return Journal.open(self.url, migrate_schema=False, create=False)

    def signed_in(self, name: str) -> Any:
        return signed_in_page(self.browser, self.base, name, wait_ms=WAIT_MS)

    def shot(self, page: Any, name: str) -> None:
        page.screenshot(path=str(self.shots / f"{name}.png"), full_page=True)


def _cli(url: str, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--config", str(EXAMPLE), "--journal-url", url])
    assert result.exit_code == 0, result.output
    return result.output


def _rolled_back_journal(url: str, data: Path) -> None:
    """v1 trades; an operator activates v2 (20x the size, a 2 % drawdown limit); the
    daemon rolls it back on its own (as tests/integration/test_guardrails_replay.py)."""
    replay(url, data, stop_after=2000)
    _cli(url, "params", "propose", "--reason", "try 20x size", "--set",
         "paper.order_volume_lots=2.0", "--set", "guardrails.max_position_lots=2.0",
         "--set", "guardrails.max_order_notional=1000000", "--set",
         "guardrails.max_gross_exposure_lots=5", "--set",
         "guardrails.regression.drawdown_pct=2.0", "--activate", "--operator", "quant")
    assert replay(url, data)["rollbacks"] == 1


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scene]:
    tmp = tmp_path_factory.mktemp("pages")
    shots = Path(os.environ.get("DTA_SCREENSHOT_DIR") or tmp / "screenshots")
    shots.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{tmp / 'journal.sqlite'}"
    _rolled_back_journal(url, write_sample_head(tmp / "EURUSD_M15.csv", 8000))
    reports = tmp / "reports"
    (tmp / "head").mkdir()
    head = write_sample_head(tmp / "head" / "EURUSD_M15.csv", 1500)
    made = CliRunner().invoke(app, ["replay", str(head), "--config", str(EXAMPLE), "--report",
                                    str(reports / "eurusd-head")])
    assert made.exit_code == 0, made.output
    extra = f'reports_dir = "{reports}"\n' + (
        f'analytics_url = "{PG_URL}"\nanalytics_table = "{TABLE}"\n' if PG_URL else "")
    config = console_config(tmp / "console.toml", url,
                            {"ann": ["analyst", "operator"], "vic": ["viewer"]}, extra)
    try:
        with console_in_browser(config, tmp / "console.log", str(CHROMIUM)) as (base,
                                                                              browser):
            yield Scene(url, base, shots, browser)
    finally:
        if PG_URL:
            from sqlalchemy import create_engine, text

            engine = create_engine(PG_URL)
            with engine.begin() as conn:
                conn.execute(text(f"DROP TABLE IF EXISTS {TABLE}"))
            engine.dispose()


def _post(page: Any, path: str, form: dict[str, str]) -> int:
    """POST ``form`` to ``path`` from the page as htmx would, with the session's CSRF
    token; returns the status (a forged request by a signed-in person)."""
    return int(page.evaluate(
        """([path, form]) => {
            const token = JSON.parse(document.body.getAttribute("hx-headers"))["X-CSRF-Token"];
            return fetch(path, {method: "POST", body: new URLSearchParams(form),
                                headers: {"HX-Request": "true", "X-CSRF-Token": token}})
                .then(r => r.status);
        }""", [path, form]))


def test_overview_shows_state_equity_streams_and_updates_itself(scene: Scene) -> None:
    page = scene.signed_in("ann")
    page.goto(f"{scene.base}/")
    page.wait_for_selector("#equity-chart[data-rendered]", timeout=WAIT_MS)
    assert int(page.get_attribute("#equity-chart", "data-rendered") or 0) > 1
    # REDUCING by the rollback, or stricter since (the day's drawdown halts).
    assert page.inner_text("#ov-state [data-state]") in ("REDUCING", "HALTED")
    assert "by system" in page.inner_text("#ov-state")
    assert page.get_attribute("#ov-streams tr[data-stream='EURUSD/M15']",
                              "data-stale") == "yes"  # replayed bars are long closed
    assert "auto_rollback:drawdown_since_activation" in page.inner_text("#ov-incidents")
    page.wait_for_function("document.body.dataset.live === 'on'", timeout=WAIT_MS)
    page.evaluate("window.__sameDocument = true")
    j = scene.journal()
    try:
        j.incidents.open_incident("warning", "stale_bars", "EURUSD M15: no bar for 45 min")
    finally:
        j.close()
    page.wait_for_selector("#ov-incidents :text('no bar for 45 min')", timeout=WAIT_MS)
    assert page.evaluate("window.__sameDocument") is True  # no reload happened
    scene.shot(page, "page_overview")
    page.context.close()


def test_providers_badges_charts_rotation_and_exports(scene: Scene) -> None:
    page = scene.signed_in("ann")
    page.goto(f"{scene.base}/providers?days=")
    assert page.get_attribute("tr[data-provider=structure]", "data-status") == "up"
    page.wait_for_selector("[data-figure=latency_p50_ms][data-rendered]", timeout=WAIT_MS)
    page.wait_for_selector("[data-figure=hit_rate][data-rendered]", timeout=WAIT_MS)
    page.wait_for_selector("[data-figure=pairs][data-rendered]", timeout=WAIT_MS)
    page.select_option("#window-form select[name=days]", "30")
    page.click("#window-form button[type=submit]")
    page.wait_for_url("**/providers?days=30**", timeout=WAIT_MS)
    csv = page.request.get(scene.base + (page.get_attribute(
        "#exports a[href*='matrix.csv']", "href") or ""))
    assert csv.status == 200 and csv.text().startswith("window_start,window_end")
    assert "structure" in csv.text() and "agree_momentum" in csv.text()
    row = "tr[data-provider=momentum]"
    page.fill(f"{row} input[name=reason]", "answers look stale")
    page.click(f"{row} button[value=disable]")
    page.wait_for_selector("#flash .flash.ok", timeout=WAIT_MS)
    page.wait_for_selector(f"{row}[data-rotation=off]", timeout=WAIT_MS)  # live re-render
    j = scene.journal()
    try:
        event = j.provider_calls.disabled_providers()["momentum"]
    finally:
        j.close()
    assert (event.operator, event.reason) == ("ann", "answers look stale")
    if PG_URL:
        page.click("#exports button")
        page.wait_for_selector("#flash :text('rows appended to')", timeout=WAIT_MS)
    else:
        assert "--to-postgres" in page.inner_text("#exports")
    scene.shot(page, "page_providers")
    page.fill(f"{row} input[name=reason]", "fixed upstream")
    page.click(f"{row} button[value=enable]")
    page.wait_for_selector(f"{row}[data-rotation=on]", timeout=WAIT_MS)
    page.context.close()
    viewer = scene.signed_in("vic")
    viewer.goto(f"{scene.base}/providers")
    assert viewer.locator("#provider-matrix form").count() == 0  # no controls offered
    assert _post(viewer, "/providers/momentum/rotation",
                 {"action": "disable", "reason": "x"}) == 403  # and refused when forged
    viewer.context.close()


def test_parameters_evidence_diff_activate_and_rollback(scene: Scene) -> None:
    page = scene.signed_in("ann")
    page.goto(f"{scene.base}/parameters")
    card = "#evidence [data-rollback='1']"
    assert "drawdown_since_activation" in page.inner_text(card)
    assert "paper.order_volume_lots" in page.inner_text(card)  # what v2 changed
    assert "incident #" in page.inner_text(card)
    page.select_option("#diff-form select[name=a]", "1")
    page.select_option("#diff-form select[name=b]", "2")
    page.click("#diff-form button[type=submit]")
    page.wait_for_selector("#diff :text('guardrails.regression.drawdown_pct')",
                           timeout=WAIT_MS)
    scene.shot(page, "page_parameters")
    page.fill("tr[data-version='2'] input[name=reason]", "re-run v2 on purpose")
    page.click("tr[data-version='2'] button[type=submit]")
    page.wait_for_selector("tr[data-version='2'].active-version", timeout=WAIT_MS)
    page.fill("#rollback-form input[name=reason]", "it lost again")
    page.click("#rollback-form button[type=submit]")
    page.wait_for_selector("tr[data-version='1'].active-version", timeout=WAIT_MS)
    j = scene.journal()
    try:
        events = [(e.version, e.action, e.operator) for e in j.params.param_events()[-2:]]
    finally:
        j.close()
    assert events == [(2, "activate", "ann"), (1, "rollback", "ann")]
    page.context.close()


def test_incidents_acknowledged_then_resolved(scene: Scene) -> None:
    j = scene.journal()
    try:
        [incident] = [i for i in j.incidents.all() if i.kind.startswith("auto_rollback")]
    finally:
        j.close()
    card = f"#incident-{incident.id}"
    page = scene.signed_in("ann")
    page.goto(f"{scene.base}/incidents")
    page.fill(f"{card} input[name=note]", "looking at v2's sizing")
    page.click(f"{card} button[value=acknowledged]")
    page.wait_for_selector(f"{card}[data-status=acknowledged]", timeout=WAIT_MS)
    scene.shot(page, "page_incidents")
    page.fill(f"{card} input[name=note]", "v2 stays bad; size back to 0.1")
    page.click(f"{card} button[value=resolved]")
    page.wait_for_selector(f"{card}[data-status=resolved]", timeout=WAIT_MS)
    j = scene.journal()
    try:
        history = next(i for i in j.incidents.all() if i.id == incident.id).details["history"]
    finally:
        j.close()
    assert [(h["status"], h["operator"]) for h in history] == [("acknowledged", "ann"),
                                                               ("resolved", "ann")]
    page.context.close()


def test_replays_open_a_report_and_its_exports(scene: Scene) -> None:
    page = scene.signed_in("vic")  # reading reports needs no role
    page.goto(f"{scene.base}/replays")
    row = "tr[data-report='eurusd-head']"
    assert "EURUSD M15" in page.inner_text(row)
    scene.shot(page, "page_replays")
    trades = page.request.get(scene.base + (page.get_attribute(
        f"{row} a[href$='trades.csv']", "href") or ""))
    assert trades.status == 200 and "attachment" in trades.headers["content-disposition"]
    report = page.goto(f"{scene.base}{page.get_attribute(f'{row} a[data-open]', 'href')}")
    assert report is not None and report.status == 200
    assert report.headers["content-security-policy"].startswith("sandbox")
    assert "DTA replay report" in page.content()
    scene.shot(page, "replay_report")
    assert page.request.get(f"{scene.base}/replays/eurusd-head/files/journal.sqlite"
                            ).status == 404  # only a report's own exports
    page.context.close()
