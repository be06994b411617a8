"""The MT5 account: its margin mode (netting or hedging) and its equity.

The margin mode decides what an opposite order does: on a netting (or exchange) account
it reduces, closes or reverses the one position of the symbol; on a hedging account it
opens a second ticket unless the ticket to close is named (``mt5_orders``). A mode we do
not know refuses to trade rather than guess.
"""

from __future__ import annotations

from typing import Any

from domain.errors import PermanentVenueError, TemporaryVenueError
from executor.brokers import mt5_client as C
from executor.brokers.mt5_client import Mt5Client

_MARGIN_MODES = frozenset({C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING, C.ACCOUNT_MARGIN_MODE_EXCHANGE,
                           C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING})
_MODE_NAMES = {C.ACCOUNT_MARGIN_MODE_RETAIL_NETTING: "netting",
               C.ACCOUNT_MARGIN_MODE_EXCHANGE: "exchange (netting)",
               C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING: "hedging"}


class Mt5Account:
    def __init__(self, client: Mt5Client) -> None:
        self.client = client
        self._margin_mode: int | None = None

    def margin_mode(self) -> int:
        """``account_info().margin_mode``, read once: it is fixed per account (MQL5
        ENUM_ACCOUNT_MARGIN_MODE). Raises ``VenueError`` for a mode we do not know."""
        if self._margin_mode is None:
            info = self.client.account_info()
            if not isinstance(info, dict) or info.get("margin_mode") is None:
                raise TemporaryVenueError(f"MT5 account_info has no margin_mode: "
                                          f"{self.client.last_error}")
            mode = int(info["margin_mode"])
            if mode not in _MARGIN_MODES:
                raise PermanentVenueError(f"MT5 account margin_mode {mode} is not supported "
                                          "(netting 0, exchange 1, hedging 2): refusing to trade")
            self._margin_mode = mode
        return self._margin_mode

    def mode_name(self) -> str:
        return _MODE_NAMES[self.margin_mode()]

    def hedging(self) -> bool:
        """A hedging account holds every deal as its own ticket: an opposite order opens a
        second position instead of closing the first (netting and exchange accounts net)."""
        return self.margin_mode() == C.ACCOUNT_MARGIN_MODE_RETAIL_HEDGING

    def read_equity(self) -> float:
        """``account_info().equity`` (balance + credit + floating profit)."""
        info = self.client.account_info()  # VenueError once the client's retries are spent
        if info is None:
            raise TemporaryVenueError(f"MT5 account_info failed: {self.client.last_error}")
        equity: Any = info.get("equity") if isinstance(info, dict) else None
        try:
            return float(equity)
        except (TypeError, ValueError):
            raise PermanentVenueError(
                f"MT5 account_info has no usable equity: {equity!r}") from None
