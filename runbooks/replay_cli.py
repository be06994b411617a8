"""``dta replay``: replay a bar file through the live cycle, print the results, write a
report; with ``--ab``, an A/B test of the ensemble against rules only.

Registered by ``runbooks.cli`` through ``register(app)``. Thin over
``executor.reports.harness`` (which drives ``executor.wiring.build_daemon``, the code `dta
run` uses) and ``executor.reports``; heavy imports stay inside the command.

The replay is journaled in its own journal (``--journal-url``; by default a new SQLite file
in the report directory, else under ``var/replays/``), never in the operator's: a journal
that already holds bars is refused (exit 5). ``--params V`` reads version V from the
operator's journal (``--params-journal``, default the settings' ``journal.url``).
"""

# No `from __future__ import annotations`: see runbooks/cli.py.

import json
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from domain.errors import (
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_JOURNAL,
    EXIT_NOT_FOUND,
    EXIT_REFUSED,
)
from runbooks.common import ConfigOpt, JsonOpt, fail, journal_for, load

if TYPE_CHECKING:
    from executor.journal.store import Journal
    from executor.reports.ab import ABDesign
    from executor.reports.analysis import RunAnalysis
    from executor.reports.harness import (
        ParamsOverride,
        ReplayHarness,
        ReplayOutcome,
        ReplayRequest,
    )
    from executor.settings import Settings

__all__ = ["parse_when", "register", "replay"]


def register(app: typer.Typer) -> None:
    """Add ``dta replay`` to the ``dta`` app."""
    app.command("replay")(replay)


def parse_when(text: str, *, end: bool) -> datetime:
    """ISO date or date-time, UTC when no offset is given. A bare date as ``--to`` means
    the whole of that day (the range ends at the next midnight)."""
    try:
        value = datetime.fromisoformat(text.strip())
    except ValueError:
        raise typer.BadParameter(f"{text!r} is not an ISO date or date-time "
                                 "(e.g. 2023-01-31 or 2023-01-31T12:00:00Z)") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    is_date = "T" not in text and " " not in text.strip() and len(text.strip()) <= 10
    if end and is_date:
        value += timedelta(days=1)
    return value.astimezone(UTC)


def _batch(text: str) -> str | int:
    if text == "day":
        return "day"
    if text.isdigit() and int(text) > 0:
        return int(text)
    raise typer.BadParameter(f"--ab-batch must be 'day' or a positive number of proposals, "
                             f"got {text!r}")


def _default_journal(report: Path | None) -> str:
    if report is not None:
        return f"sqlite:///{(report / 'journal.sqlite').resolve()}"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return f"sqlite:///{Path('var/replays').resolve() / f'replay-{stamp}.sqlite'}"


def _read_params(url: str, version: int) -> "ParamsOverride":
    from domain.errors import JournalError
    from executor.journal.store import Journal
    from executor.reports.harness import ParamsOverride, masked_url

    try:
        source = Journal.open(url, migrate_schema=False, create=False)
    except JournalError as exc:
        fail(f"--params-journal: {exc}", EXIT_JOURNAL)
    try:
        found = [v for v in source.params.param_versions() if v.version == version]
    finally:
        source.close()
    if not found:
        fail(f"no parameter set version {version} in {masked_url(url)} "
             "(see `dta params list`)", EXIT_NOT_FOUND)
    return ParamsOverride(version, dict(found[0].content), masked_url(url))


@contextmanager
def _stop_on_signals(stop: Callable[[], None]) -> Iterator[None]:
    """SIGINT / SIGTERM finish the bar in progress and end the run as ``stopped``."""
    previous: dict[signal.Signals, Any] = {}
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, lambda _s, _f: stop())
    except ValueError:  # not the main thread (embedded use): leave signals alone
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _progress(total: int) -> Iterator[Callable[[int], None]]:
    """A progress bar on stderr when it is a terminal; silent otherwise."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    with Progress(TextColumn("replay"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("bars"), TimeRemainingColumn(), console=console,
                  disable=not console.is_terminal, transient=True) as progress:
        task = progress.add_task("replay", total=total)
        yield lambda done: progress.update(task, completed=min(done, total))


def replay(
    data: Annotated[Path, typer.Argument(help="Bar file: MT5 CSV export or ccxt-style OHLCV "
                                         "JSON.")],
    from_: Annotated[str | None, typer.Option("--from", help="First bar (open time, "
                     "inclusive), ISO date or date-time; UTC unless an offset is given.")] = None,
    to: Annotated[str | None, typer.Option("--to", help="End (open time, exclusive); a bare "
                  "date includes that whole day.")] = None,
    params: Annotated[int | None, typer.Option("--params", help="Replay with this parameter-"
                      "set version (`dta params list`) instead of the settings file's.")] = None,
    params_journal: Annotated[str | None, typer.Option("--params-journal", help="Journal "
                              "holding --params versions (default: the settings' "
                              "journal.url).")] = None,
    journal_url: Annotated[str | None, typer.Option("--journal-url", help="Journal to record "
                           "the replay in; must hold no bars yet (default: REPORT/"
                           "journal.sqlite, else var/replays/replay-<time>.sqlite).")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Directory for report.html, "
                      "CSV/JSON exports of every table and run.json.")] = None,
    ab: Annotated[bool, typer.Option("--ab", help="A/B test: batches of signals randomly "
                  "assigned to rules only (baseline) or the ensemble (enhanced).")] = False,
    seed: Annotated[int, typer.Option("--seed", help="A/B assignment and bootstrap seed.")] = 0,
    ab_batch: Annotated[str, typer.Option("--ab-batch", help="A/B batch: 'day' or a number "
                        "of consecutive proposals.")] = "day",
    resamples: Annotated[int, typer.Option("--resamples", help="A/B bootstrap resamples.",
                                           min=100)] = 2000,
    smc_reference: Annotated[Path | None, typer.Option("--smc-reference", help="Directory of "
                             "reference labels (<SYMBOL>_<TF>_bos_choch.csv, ..._liquidity.csv,"
                             " ..._ob.csv) to score the SMC detections against.")] = None,
    symbol: Annotated[str | None, typer.Option(help="Symbol, if not inferable.")] = None,
    timeframe: Annotated[str | None, typer.Option(help="Timeframe, if not inferable.")] = None,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Replay DATA through the live cycle (paper broker, journal on), print the results and,
    with --report, write a self-contained HTML report."""
    start = parse_when(from_, end=False) if from_ else None
    end = parse_when(to, end=True) if to else None
    batch = _ab_batch(ab, seed, ab_batch)
    base, settings = _load_settings(config, symbol, timeframe,
                                    journal_url or _default_journal(report))

    from executor.reports.ab import ABDesign
    from executor.reports.harness import ReplayRequest

    override = _read_params(params_journal or base.journal.url, params) \
        if params is not None else None
    design = ABDesign(seed=seed, batch=batch, resamples=resamples) if ab else None
    harness, journal = _start(settings, ReplayRequest(data, start, end, override, design))
    outcome, analysis, scores, t0 = _run(harness, journal, settings, design, smc_reference)
    result = _result(outcome, analysis, scores)
    if report is not None:
        result["report"] = _write(report, analysis, outcome.info, scores, result, t0,
                                  _chart_inputs(harness))
    typer.echo(json.dumps(result, indent=2, sort_keys=True, default=str) if as_json
               else _format(result, analysis))
    if outcome.status == "stopped":
        raise typer.Exit(EXIT_FAILURE)


def _ab_batch(ab: bool, seed: int, ab_batch: str) -> str | int:
    batch = _batch(ab_batch)
    if not ab and (seed != 0 or ab_batch != "day"):
        fail("--seed and --ab-batch only apply with --ab", EXIT_CONFIG)
    return batch


def _load_settings(config: Path | None, symbol: str | None, timeframe: str | None,
                   url: str) -> tuple["Settings", "Settings"]:
    """(the operator's settings, the replay's: paper mode, journaled at ``url``)."""
    data_over = {k: v for k, v in {"symbol": symbol, "timeframe": timeframe}.items() if v}
    base = load(config, data=data_over or None)
    return base, load(config, mode="paper", journal={"url": url}, data=data_over or None)


def _start(settings: "Settings",
           request: "ReplayRequest") -> tuple["ReplayHarness", "Journal"]:
    """Logging as `dta run` sets it up, the replay's own journal, and the harness over it
    (a refused or misconfigured replay exits with the journal closed)."""
    from domain.errors import ConfigError, DataFormatError
    from executor.log_setup import configure_logging
    from executor.reports.harness import ReplayHarness, ReplayRefused

    configure_logging(settings.log_level, settings.secret_values())
    journal = journal_for(settings, migrate=True, create=True)  # the replay's own
    try:
        return ReplayHarness(settings, journal, request), journal
    except ReplayRefused as exc:
        journal.close()
        fail(str(exc), EXIT_REFUSED)
    except (ConfigError, DataFormatError) as exc:
        journal.close()
        fail(str(exc), exc.exit_code)


def _run(harness: "ReplayHarness", journal: "Journal", settings: "Settings",
         design: "ABDesign | None",
         smc_reference: Path | None) -> tuple["ReplayOutcome", "RunAnalysis", Any, float]:
    """Run the replay (signals stop it after the bar in progress) and analyse its journal:
    (outcome, analysis, SMC scores or None, when the analysis started)."""
    from domain.errors import DtaError

    try:
        with _stop_on_signals(harness.executor.stop_requested.set), \
                _progress(harness.total_bars) as on_progress:
            outcome = harness.run(on_progress)
        t0 = time.perf_counter()
        from executor.reports.analysis import analyze_run
        from executor.reports.journal_data import load_run_data

        analysis = analyze_run(load_run_data(journal),
                               contract_size=settings.paper.contract_size,
                               initial_balance=settings.paper.initial_balance,
                               ab_design=design, ab_run_id=outcome.run_id)
        scores = None
        if smc_reference is not None:
            scores = _smc_scores(harness, smc_reference)
    except DtaError as exc:  # the code its type documents, as from every command
        journal.close()
        fail(str(exc), exc.exit_code)
    journal.close()
    return outcome, analysis, scores, t0


def _result(outcome: "ReplayOutcome", analysis: "RunAnalysis", scores: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "status": outcome.status, "run_id": outcome.run_id, "replay": outcome.info,
        "results": analysis.metrics.as_dict(),
        "engine": {k: outcome.summary.get(k) for k in (
            "bars_processed", "bars_rejected", "proposals", "vetoes", "orders", "fills",
            "elapsed_s", "bars_per_s", "pnl")},
    }
    if analysis.ab is not None:
        result["ab"] = analysis.ab.as_dict()
    if scores is not None:
        result["smc_scores"] = [s.as_dict() for s in scores]
    return result


def _smc_scores(harness: Any, directory: Path) -> Any:
    from executor.reports.smc_scoring import score_detections

    if not directory.is_dir():
        fail(f"--smc-reference {directory} is not a directory", EXIT_CONFIG)
    source, loaded = harness.source, harness.daemon.loaded
    first = source.bars.index(loaded.bars[0]) if loaded.bars else 0
    prefix = f"{loaded.symbol}_{loaded.timeframe}"
    if not any(directory.glob(f"{prefix}_*.csv")):
        fail(f"--smc-reference: no {prefix}_*.csv files in {directory}", EXIT_CONFIG)
    return score_detections(loaded.bars, directory, prefix, first_row=first,
                            builder_params=dict(harness.executor.c.snapshot_params))


def _chart_inputs(harness: "ReplayHarness") -> dict[str, Any]:
    """What the price panel needs of the run: the symbol's point (its price digits) and
    the SMC builder's parameters (the events the strategy saw)."""
    loaded = harness.daemon.loaded
    return {"point": loaded.point if loaded is not None else None,
            "snapshot_params": dict(harness.executor.c.snapshot_params)}


def _write(report: Path, analysis: "RunAnalysis", info: dict[str, Any], scores: Any,
           result: dict[str, Any], t0: float, chart: dict[str, Any]) -> dict[str, Any]:
    from executor.reports.html import write_report
    from executor.reports.replay_report import build_report

    d = info["data"]
    meta: tuple[tuple[str, str], ...] = (
            ("data", f"{d['symbol']} {d['timeframe']} {Path(d['source']).name}"),
            ("bars", f"{d['bars_in_range']:,} ({d['first_bar'][:10]} .. {d['last_bar'][:10]})"),
            ("sha256", d["sha256"][:16]),
            ("params", info["params"]["hash"] + (f" (v{info['params']['source_version']})"
                                                 if info["params"]["source_version"] else "")),
            ("providers", ", ".join(info["providers"]["configured"]) or "none"))
    if info.get("ab"):
        meta += (("A/B seed", str(info["ab"]["seed"])),)
    built = build_report(analysis, title="DTA replay report" + (" with A/B test"
                                                                 if analysis.ab else ""),
                         run_info=info, meta=meta, smc_scores=scores,
                         smc_note="Matched one to one by direction and reference bar within "
                                  "3 bars; order and mitigation blocks after the package's "
                                  "hindsight filter (docs/reports.md).", **chart)
    written = write_report(built, report)
    seconds = time.perf_counter() - t0
    (report / "run.json").write_text(json.dumps({**result, "report_seconds": round(seconds, 3)},
                                                indent=2, sort_keys=True, default=str) + "\n",
                                     encoding="utf-8")
    return {"html": str(written.html), "exports": len(written.exports),
            "seconds": round(seconds, 3)}


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.1f} %"


def _num(v: float | None, fmt: str = "+.2f") -> str:
    return "–" if v is None else format(v, fmt)


def _format(r: dict[str, Any], a: "RunAnalysis") -> str:
    d, p, m, e = r["replay"]["data"], r["replay"]["params"], a.metrics, r["engine"]
    params = (f"version {p['source_version']} from {p['source_journal']}"
              if p["source_version"] is not None else "settings file")
    lines = [
        f"DTA replay {r['status']}: {d['symbol']} {d['timeframe']}, {d['bars_in_range']:,} "
        f"bars {d['first_bar'][:16]} .. {d['last_bar'][:16]} (data sha256 {d['sha256'][:12]})",
        f"  params     {p['hash']} ({params}); providers "
        f"{', '.join(r['replay']['providers']['configured']) or 'none'}",
        f"  engine     {e['bars_processed']:,} bars at {e['bars_per_s']:,.0f} bars/s, "
        f"{e['proposals']} proposals, {sum((e['orders'] or {}).values())} orders, "
        f"{e['fills']} fills",
        f"  trades     {m.trades}   win rate {_pct(m.win_rate)}   expectancy "
        f"{_num(m.expectancy_r)} R ({_num(m.expectancy_money)} per trade)",
        f"  R          average {_num(m.avg_r)}, median {_num(m.median_r)}, total "
        f"{m.total_r:+.2f}",
        f"  PnL        {m.total_pnl:+,.2f}; final realised equity {m.final_equity:,.2f}",
        f"  drawdown   {m.max_drawdown:,.2f} ({m.max_drawdown_pct:.2f} % of peak)",
        f"  exposure   {_pct(m.exposure)} of bars",
        f"  Sharpe     per trade {_num(m.sharpe_per_trade)}, daily {_num(m.sharpe_daily)} "
        "(annualised)",
    ]
    if a.ab is not None:
        ab = a.ab
        lines.append(f"  A/B        seed {ab.design.seed}, batch {ab.design.batch}, "
                     f"{ab.design.resamples} resamples, "
                     f"{ab.design.confidence:.0%} intervals (enhanced - baseline)")
        for arm, s in ab.arms.items():
            lines.append(f"    {arm:<9} {s.batches} batches, {s.trades} trades, win rate "
                         f"{_pct(s.win_rate)}, mean R {_num(s.mean_r)}, max DD "
                         f"{s.max_drawdown_r:.2f} R")
        for diff in ab.diffs:
            lines.append(f"    {diff.metric:<15} {_num(diff.estimate, '+.3f')} "
                         f"[{_num(diff.low, '+.3f')}, {_num(diff.high, '+.3f')}]")
    for s in r.get("smc_scores") or []:
        lines.append(f"  SMC {s['kind']:<18} precision {s['precision']:.3f} recall "
                     f"{s['recall']:.3f} ({s['matched']}/{s['ours']} of ours, "
                     f"{s['reference']} reference)")
    if "report" in r:
        lines.append(f"  report     {r['report']['html']} ({r['report']['exports']} exports, "
                     f"{r['report']['seconds']:.2f} s)")
    lines.append(f"  journal    {r['replay']['journal']} (run {r['run_id']})")
    return "\n".join(lines)


def main() -> None:  # pragma: no cover - `python -m runbooks.replay_cli` for a quick look
    app = typer.Typer(add_completion=False)

    @app.callback()
    def _root() -> None:
        """DTA replay."""

    register(app)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(EXIT_INTERRUPTED)


if __name__ == "__main__":  # pragma: no cover
    main()
