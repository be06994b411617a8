"""Replay harness: a bar file, a date range, a parameter version and optionally an A/B
design, run through the *same* daemon `dta run` builds (``executor.wiring.build_daemon``).

Only three things differ from `dta run`, each applied to the built daemon before it starts:
- the feed replays the bars inside [start, end) only (``filter_bars``);
- with a parameter version, the executor registers that version's content instead of the
  settings file's (checked after start: the run must decide under that exact hash);
- with an A/B design, every parameter version's ensemble is wrapped in ``ABEnsemble``.

The run's summary in the journal (``runs.summary``) gets a ``replay`` entry with the data
file's SHA-256, the range, the parameter hash and version and the provider mix, so the
result can be reproduced from the journal alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from domain import ensure_utc, stable_hash
from domain.errors import ConfigError, DtaError
from executor.daemon import RealtimeExecutor
from executor.engine.clock import SimulatedClock
from executor.feeds.files import LoadedBars
from executor.feeds.replay import ReplayFeed
from executor.journal.store import Journal
from executor.reports.ab import ABDesign, Assigner, ab_component_factory
from executor.settings import Settings
from executor.wiring import Daemon, build_daemon

__all__ = ["ParamsOverride", "ReplayHarness", "ReplayOutcome", "ReplayRefused",
           "ReplayRequest", "filter_bars", "masked_url"]


class ReplayRefused(DtaError):
    """The replay journal already holds processed bars: a replay into it would resume
    instead of starting at the range's first bar."""


@dataclass(frozen=True, slots=True)
class ParamsOverride:
    """A parameter-set version read from a journal (``dta params list``)."""

    version: int
    content: dict[str, Any]
    source: str  # where it was read from (a masked journal URL)


@dataclass(frozen=True, slots=True)
class ReplayRequest:
    data: Path
    start: datetime | None = None  # inclusive, bar open time
    end: datetime | None = None  # exclusive, bar open time
    params: ParamsOverride | None = None
    ab: ABDesign | None = None


@dataclass
class ReplayOutcome:
    status: str
    run_id: int | None
    summary: dict[str, Any]
    info: dict[str, Any]
    loaded: LoadedBars
    ab_log: list[tuple[str, str]] = field(default_factory=list)


def masked_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL we cannot parse is shown as nothing, never raised
        return "<unparseable url>"


def filter_bars(loaded: LoadedBars, start: datetime | None, end: datetime | None,
                ) -> LoadedBars:
    """The rows whose bar open time is in [start, end), file order kept (bad rows too:
    the validator still rejects them with a reason, as in a full replay)."""
    if start is None and end is None:
        return loaded
    s = ensure_utc(start) if start is not None else None
    e = ensure_utc(end) if end is not None else None
    if s is not None and e is not None and e <= s:
        raise ConfigError(f"--to {e.isoformat()} is not after --from {s.isoformat()}")
    bars = tuple(b for b in loaded.bars
                 if (s is None or b.time >= s) and (e is None or b.time < e))
    return dataclasses.replace(loaded, bars=bars)


class ReplayHarness:
    """Build once (refusing a journal that already holds bars), then ``run``."""

    def __init__(self, settings: Settings, journal: Journal, request: ReplayRequest) -> None:
        if journal.queries.bar_counts()["processed"]:
            raise ReplayRefused(
                f"journal {masked_url(journal.url)} already holds processed "
                "bars; a replay starts from a fresh journal (omit --journal-url, or give a "
                "new one)")
        self.settings = settings
        self.journal = journal
        self.request = request
        self.daemon: Daemon = build_daemon(settings, journal, data=request.data)
        if self.daemon.loaded is None:
            raise ConfigError("a replay reads a bar file: mode live has none")
        self.source: LoadedBars = self.daemon.loaded
        loaded = filter_bars(self.source, request.start, request.end)
        if not loaded.bars:
            raise ConfigError(
                f"no bars of {request.data} in the range "
                f"[{_iso(request.start) or 'start'}, {_iso(request.end) or 'end'})")
        feed = ReplayFeed(loaded)
        self.daemon.feed = self.feed = feed
        self.daemon.loaded = self.loaded = loaded
        self.executor.feed = feed
        self.expected_hash: str | None = None
        if request.params is not None:
            content = request.params.content
            self.executor.component_factory(request.params.version, content)  # fail fast
            self.executor.settings_params = content
            self.expected_hash = stable_hash(content)
        self.assigner: Assigner | None = None
        if request.ab is not None:
            self.assigner = Assigner(request.ab)
            self.executor.component_factory = ab_component_factory(
                self.executor.component_factory, self.assigner)

    @property
    def executor(self) -> RealtimeExecutor:
        return self.daemon.executor

    @property
    def total_bars(self) -> int:
        return len(self.loaded.bars)

    def run(self, on_progress: Callable[[int], None] | None = None) -> ReplayOutcome:
        ex = self.executor
        ex.start()
        if self.expected_hash is not None and ex.c.params.content_hash != self.expected_hash:
            ex.stop("failed")
            raise ConfigError(
                f"the replay journal activated parameters {ex.c.params.content_hash}, not "
                f"version {self.request.params.version if self.request.params else '?'} "
                f"({self.expected_hash}); replay into a fresh journal")
        status = "completed"
        try:
            ex.run_replay(SimulatedClock(), self.feed.next_close_time, on_progress)
            if ex.stop_requested.is_set():
                status = "stopped"
        except DtaError:
            ex.stop("failed")
            raise
        if on_progress is not None:
            on_progress(ex.stats.bars_processed)
        summary = ex.stop(status)
        info = self.run_info(summary)
        summary["replay"] = info
        self.journal.runs.end_run(status, summary)  # the same run row, now with its replay facts
        log = list(self.assigner.log) if self.assigner is not None else []
        return ReplayOutcome(status, self.journal.run_id, summary, info, self.loaded,
                             log)

    def run_info(self, summary: dict[str, Any]) -> dict[str, Any]:
        req, src, loaded = self.request, self.source, self.loaded
        content = self.executor.c.params.values
        providers = content.get("ensemble", {}).get("providers", {})
        configured = {name: {"kind": cfg.get("kind"), "weight": cfg.get("weight")}
                      for name, cfg in providers.items()}
        reproduce = [f"dta replay {src.source}"]
        if req.start is not None:
            reproduce.append(f"--from {_iso(req.start)}")
        if req.end is not None:
            reproduce.append(f"--to {_iso(req.end)}")
        if req.params is not None:
            reproduce.append(f"--params {req.params.version}")
        if req.ab is not None:
            reproduce.append(f"--ab --seed {req.ab.seed} --ab-batch {req.ab.batch}")
        return {
            "data": {
                "source": src.source, "sha256": src.sha256, "format": src.format,
                "symbol": loaded.symbol, "timeframe": loaded.timeframe,
                "rows_in_file": len(src.bars), "unparseable_rows": len(src.rejected),
                "from": _iso(req.start), "to": _iso(req.end),
                "bars_in_range": len(loaded.bars),
                "first_bar": loaded.bars[0].time.isoformat() if loaded.bars else None,
                "last_bar": loaded.bars[-1].time.isoformat() if loaded.bars else None,
            },
            "params": {
                "hash": self.executor.c.params.content_hash,
                "version_in_replay_journal": self.executor.c.version,
                "source_version": req.params.version if req.params else None,
                "source_journal": req.params.source if req.params else None,
                "from_settings_file": req.params is None,
            },
            "providers": {"configured": configured,
                          "decisions_by_mix": self.journal.queries.decisions_by_mix()},
            "ab": req.ab.as_dict() if req.ab is not None else None,
            "settings_hash": self.settings.content_hash,
            "account": self.settings.account,
            "contract_size": self.settings.paper.contract_size,
            "initial_balance": self.settings.paper.initial_balance,
            "journal": masked_url(self.journal.url),
            "trading_state_at_end": summary.get("trading_state"),
            "reproduce": " ".join(reproduce),
        }

def _iso(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None
