"""Shadow mode beside a scripted EA: pairing and report with known agreement figures."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from support.daemon_helpers import EXAMPLE, replay
from support.samples import write_sample_head
from typer.testing import CliRunner

from domain.errors import DataFormatError
from executor.journal.store import Journal
from executor.shadow import CsvEaSource, EaDeal, OurEntry, pair, summarize
from runbooks.cli import app

runner = CliRunner()


def _our_entries(url: str) -> list[dict[str, object]]:
    j = Journal.open(url)
    try:
        return j.queries.entry_orders_with_proposals("paper-1")
    finally:
        j.close()


def test_shadow_run_pairs_with_scripted_ea_deals(journal_url: str, tmp_path: Path) -> None:
    data = write_sample_head(tmp_path / "EURUSD_M15.csv", 6000)
    reference = f"sqlite:///{tmp_path / 'paper.sqlite'}"
    replay(reference, data)
    ours = _our_entries(reference)
    assert len(ours) >= 8

    # The EA: agrees on the first 6 entries 15 minutes later at +2 pips, takes the
    # opposite side on the next 2, skips the rest, and trades twice on its own.
    rows = ["ticket,time,symbol,side,price,volume,entry,sl,tp,magic,comment"]
    for i, o in enumerate(ours[:8]):
        bar_close = o["bar_time"] + timedelta(minutes=15)  # type: ignore[operator]
        side = o["side"] if i < 6 else ("sell" if o["side"] == "buy" else "buy")
        tags = o["tags"] or []
        comment = "SMS retest" if any(t.startswith("choch") for t in tags) else "EA entry"
        t = (bar_close + timedelta(minutes=15)).replace(tzinfo=None).isoformat()
        rows.append(f"{1000 + i},{t},EURUSD,{side},{o['entry'] + 0.0002:.5f},0.1,in,"
                    f"{o['stop_loss']:.5f},{o['take_profit']:.5f},777,{comment}")
        rows.append(f"{2000 + i},{t},EURUSD,{side},{o['entry']:.5f},0.1,out,,,777,close")
    rows.append("3000,2022-10-10T03:00:00,EURUSD,buy,0.97400,0.1,in,,,777,own idea")
    rows.append("3001,2022-10-10T05:00:00,EURUSD,sell,0.97300,0.1,in,,,555,another EA")
    deals = tmp_path / "ea_deals.csv"
    deals.write_text("\n".join(rows) + "\n")

    j = Journal.open(journal_url)  # the account/strategy was promoted to shadow earlier
    j.clearances.record_clearance(account="paper-1", strategy="smc_ob_retest", action="promote",
                                  mode="shadow", person="desk", note="cleared for the test")
    j.close()
    summary = replay(journal_url, data, mode="shadow",
                     shadow={"ea_deals_file": str(deals), "ea_magic": 777})
    assert summary["ea_deals"] == 17  # 8 in + 8 out + 1 own; magic 555 is not our EA
    assert summary["mode"] == "shadow"
    j = Journal.open(journal_url)
    try:
        brokers = {o.broker_order_id.split("-")[0] for o in j.orders.all() if o.broker_order_id}
    finally:
        j.close()
    assert brokers == {"shadow"}  # virtual fills: nothing left the process

    r = runner.invoke(app, ["shadow", "report", "--json", "--config", str(EXAMPLE),
                            "--journal-url", journal_url])
    assert r.exit_code == 0, r.output
    report = json.loads(r.stdout)["summary"]
    assert report["our_entries"] == len(ours)
    assert report["ea_entries"] == 9
    assert report["matched"] == 8
    assert report["only_ours"] == len(ours) - 8 and report["only_ea"] == 1
    assert report["direction_agreement"] == pytest.approx(6 / 8)
    assert report["timing_s"] == {"mean": 900.0, "median": 900.0}
    assert report["entry_diff"]["mean"] == pytest.approx(0.0002, abs=1e-6)
    assert report["sl_diff"]["median"] == pytest.approx(0.0, abs=1e-5)
    text = runner.invoke(app, ["shadow", "report", "--config", str(EXAMPLE),
                               "--journal-url", journal_url, "--report", str(tmp_path / "r")])
    assert "direction agreement: 75%" in text.stdout
    html = (tmp_path / "r" / "shadow.html").read_text()
    assert "Shadow pairing against the EA" in html and "75%" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched at view time
    assert (tmp_path / "r" / "shadow_pairs.csv").exists()


def test_pairing_rules() -> None:
    from datetime import UTC, datetime

    t0 = datetime(2023, 1, 2, 10, tzinfo=UTC)
    ours = [OurEntry("a", "EURUSD", t0, "buy", 1.1, 1.09, 1.12, ("choch_bullish",)),
            OurEntry("b", "EURUSD", t0 + timedelta(hours=5), "sell", 1.1, None, None)]
    deals = [EaDeal(1, "EURUSD", t0 + timedelta(minutes=50), "buy", 1.1003, 0.1,
                    comment="BOS"),
             EaDeal(2, "EURUSD", t0 + timedelta(minutes=10), "buy", 1.1001, 0.1,
                    comment="sms entry"),
             EaDeal(3, "GBPUSD", t0 + timedelta(hours=5), "sell", 1.3, 0.1)]
    pairs = pair(ours, deals, window=timedelta(hours=1))
    first = next(p for p in pairs if p.ours and p.ours.client_order_id == "a")
    assert first.ea is not None and first.ea.ticket == 2  # nearest in time wins
    assert first.structure_agrees is True and first.slippage == pytest.approx(0.0001)
    s = summarize(pairs)
    assert (s["matched"], s["only_ours"], s["only_ea"]) == (1, 1, 2)


def test_bad_ea_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "deals.csv"
    bad.write_text("ticket,time,symbol,side,price,volume\n1,2023-01-01T00:00:00,EURUSD,hold,1,1\n")
    with pytest.raises(DataFormatError, match="side must be buy or sell"):
        CsvEaSource(bad)
    with pytest.raises(DataFormatError, match="does not exist"):
        CsvEaSource(tmp_path / "missing.csv")
