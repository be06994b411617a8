"""The journal: the daemon's memory and the operator's evidence.

``Journal`` composes the unit of work (``unit_of_work.py``: session, durable commit,
per-bar buffers, checkpoints; its docstring has the write discipline) and one repository
per aggregate, each an attribute: ``journal.orders.record_fill(...)``,
``active_version(journal.params)``. Reads for the CLI and reports are
``journal.queries`` (``read_models.py``).

Attributes (README "Journal" has the table): ``runs`` (runs, bars, parameter sets),
``decisions``, ``orders`` (with events and fills), ``trading_state`` (StateStore),
``params`` (ParamStore), ``approvals``, ``incidents``, ``provider_calls`` (CallJournal),
``clearances`` (ClearanceStore), ``ea_deals``, ``risk_days``, ``costs`` (funding),
``queries``, ``changes`` (what changed: the console's live updates).
"""

from __future__ import annotations

from sqlalchemy.engine import Engine

from executor.journal import database
from executor.journal.approvals import ApprovalRepository
from executor.journal.changes import ChangeMarks
from executor.journal.clearances import ClearanceRepository
from executor.journal.costs import CostRepository
from executor.journal.database import make_engine, open_engine
from executor.journal.decisions import DecisionRepository
from executor.journal.ea_deals import EaDealRepository
from executor.journal.incidents import IncidentRepository
from executor.journal.orders import OrderRepository
from executor.journal.parameters import ParamRepository
from executor.journal.provider_calls import ProviderCallRepository
from executor.journal.read_models import JournalQueries
from executor.journal.risk_days import RiskDayRepository
from executor.journal.runs import RunRepository
from executor.journal.trading_state import STATE_TTL_S, TradingStateRecord, TradingStateRepository
from executor.journal.unit_of_work import UnitOfWork

__all__ = ["STATE_TTL_S", "Journal", "TradingStateRecord", "make_engine"]


class Journal:
    """Owner of every persisted fact: the unit of work (``uow``) and the repositories that
    write and read through it. Not thread-safe by design (see ``UnitOfWork``)."""

    def __init__(self, engine: Engine) -> None:
        self.uow = uow = UnitOfWork(engine)
        self.runs = RunRepository(uow)
        self.decisions = DecisionRepository(uow)
        self.orders = OrderRepository(uow)
        self.params = ParamRepository(uow, self.runs)
        self.approvals = ApprovalRepository(uow)
        self.incidents = IncidentRepository(uow)
        self.provider_calls = ProviderCallRepository(uow)
        self.clearances = ClearanceRepository(uow)
        self.ea_deals = EaDealRepository(uow)
        self.risk_days = RiskDayRepository(uow)
        self.costs = CostRepository(uow)  # funding payments (perpetual swaps)
        self.trading_state = TradingStateRepository(uow)
        self.queries = JournalQueries(uow, self.orders, self.params)
        self.changes = ChangeMarks(uow)  # the console's live updates

    @classmethod
    def open(cls, url: str, *, migrate_schema: bool = True, create: bool = True) -> Journal:
        """``create=False`` (every `dta` command but ``db upgrade`` and a paper run): only a
        journal that already has a schema; never a new file, directory or schema, so a
        mistyped URL cannot yield an empty journal with trading ACTIVE."""
        return cls(open_engine(url, migrate_schema=migrate_schema, create=create))

    def close(self) -> None:
        with self.uow.lock:
            try:
                self.uow.commit()
            finally:
                self.trading_state.close()
                self.uow.close()

    # ------------------------------------------------------------------ unit of work

    @property
    def dialect(self) -> str:
        return self.uow.dialect

    @property
    def run_id(self) -> int | None:
        return self.uow.run_id

    @property
    def pending_rows(self) -> int:
        return self.uow.pending_rows

    def commit(self, *, durable: bool = False) -> None:
        self.uow.commit(durable=durable)

    def rollback(self) -> None:
        self.uow.rollback()

    def paper_durability(self) -> None:
        self.uow.paper_durability()

    def manual_checkpoints(self) -> None:
        self.uow.manual_checkpoints()

    def checkpoint_due(self, commits: int = 64) -> bool:
        return self.uow.checkpoint_due(commits)

    def checkpoint(self) -> None:
        self.uow.checkpoint()

    # ------------------------------------------------------------------ maintenance

    @property
    def url(self) -> str:
        """The database URL, password masked as SQLAlchemy shows it."""
        return str(self.uow.engine.url)

    def schema_revisions(self) -> tuple[str | None, str | None]:
        """(this journal's schema revision, the code's head revision)."""
        return database.schema_revisions(self.uow.engine)

    def has_version_table(self) -> bool:
        return database.has_version_table(self.uow.engine)

    def probe_write(self) -> None:
        """One committed write outside the session (``dta doctor``); raises what failed."""
        database.probe_write(self.uow.engine)
