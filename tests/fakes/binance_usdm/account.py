"""USD-M account semantics: one netted position per symbol (one-way mode), margin, leverage,
margin type, position mode, funding, income history and the liquidation price.

From the USD-M documentation (developers.binance.com/docs/derivatives/usds-margined-futures):
- "Position Information V3" ``GET /fapi/v3/positionRisk``: only symbols with a position
  (or open orders); ``positionAmt`` signed (negative = short), ``positionSide`` BOTH in
  one-way mode, ``liquidationPrice``, ``isolatedMargin`` (0 when cross: which is how ccxt
  tells the margin mode from v3), ``notional`` signed. V2 (``/fapi/v2/positionRisk``) lists
  every symbol and adds ``leverage``, ``marginType`` ("cross"/"isolated").
- "Change Initial Leverage" ``POST /fapi/v1/leverage`` -> ``{leverage, maxNotionalValue,
  symbol}``; outside 1..125: -4028. "Change Margin Type" ``POST /fapi/v1/marginType``
  (ISOLATED | CROSSED) -> ``{"code": 200, "msg": "success"}``; already that type: -4046
  "No need to change margin type." (ccxt 4.5.90 raises ``MarginModeAlreadySet`` for it,
  by its message whatever the URL: ``options.setMarginMode.throwMarginModeAlreadySet``
  defaults to true);
  with an open position -4048, with open orders -4047. "Query Symbol Configuration"
  ``GET /fapi/v1/symbolConfig`` reads them back (``marginType`` CROSSED | ISOLATED,
  ``leverage``).
- "Change Position Mode" ``POST /fapi/v1/positionSide/dual`` (``dualSidePosition``
  "true" = hedge) -> code 200; unchanged: -4059 "No need to change position side.";
  with a position -4068, with open orders -4067. "Get Current Position Mode"
  ``GET /fapi/v1/positionSide/dual`` -> ``{"dualSidePosition": false}``.
- "Get Income History" ``GET /fapi/v1/income``: rows ``symbol, incomeType, income, asset,
  info, time, tranId, tradeId``; ``incomeType`` REALIZED_PNL, FUNDING_FEE, COMMISSION,
  TRANSFER, ...; ``limit`` default 100, max 1000; without ``startTime``/``endTime`` the
  last 7 days, both inclusive. "``tranId`` is unique in the same incomeType for a user":
  not across types, so here each type counts its own (a COMMISSION and a FUNDING_FEE
  share ids). "Income history only contains data for the last three months": older rows
  are not returned whatever the window. Funding: "Introduction to Binance Futures
  Funding Rates" (binance.com FAQ 360033525031): every 8 h, funding = position notional
  (at the mark price) x rate; a positive rate means longs pay shorts.
- "Account Information V3" ``GET /fapi/v3/account``: ``assets[]`` with ``walletBalance``,
  ``marginBalance``, ``availableBalance``, ``initialMargin`` (what ccxt's fetch_balance
  reads). Commission is charged in USDT, the margin asset, on every fill ("USDⓈ-M Futures
  Trading Fee", 0.0500 % taker / 0.0200 % maker at VIP 0).
- Liquidation price, "How to Calculate Liquidation Price of USDⓈ-M Contracts" (binance.com
  FAQ b3c689c1f50a44cabb3a84e663b81d93), one-way mode:
  LP = (WB - TMM1 + UPNL1 + cum - Side*|Q|*EP) / (|Q|*MMR - Side*|Q|), WB the cross wallet
  balance (or the isolated wallet), TMM1/UPNL1 the maintenance margin and unrealised PnL
  of the *other* cross positions (0 when isolated), Side +1 long, -1 short, MMR and cum
  from the position's notional bracket.
"""

from __future__ import annotations

import threading
from typing import Any

from fakes.binance_loopback import fmt
from fakes.binance_usdm.market import BRACKETS, bracket_of

SEVEN_DAYS_MS = 7 * 86_400_000
KEPT_MS = 90 * 86_400_000  # the income history's "last three months"


def flat() -> dict[str, float]:
    return {"amt": 0.0, "entry": 0.0, "margin": 0.0, "update": 0}


class Account:
    symbols: dict[str, dict[str, Any]]
    orders: list[dict[str, Any]]
    algo_orders: list[dict[str, Any]]
    _lock: threading.RLock

    def now_ms(self) -> int:
        raise NotImplementedError

    def mark(self, sid: str) -> float:
        raise NotImplementedError

    def init_account(self, wallet: float, leverage: int) -> None:
        self.wallet = wallet
        self.positions: dict[str, dict[str, float]] = {k: flat() for k in self.symbols}
        self.leverage: dict[str, int] = dict.fromkeys(self.symbols, leverage)
        self.margin_type: dict[str, str] = dict.fromkeys(self.symbols, "CROSSED")
        self.dual_side = False
        self.income: list[dict[str, Any]] = []
        self._next_tran: dict[str, int] = {}  # per income type

    # ------------------------------------------------------------------ numbers

    def upnl(self, sid: str) -> float:
        p = self.positions[sid]
        return p["amt"] * (self.mark(sid) - p["entry"])

    def maint_margin(self, sid: str) -> float:
        notional = abs(self.positions[sid]["amt"]) * self.mark(sid)
        _, _, _, mmr, cum = bracket_of(notional)
        return notional * mmr - cum if notional else 0.0

    def initial_margin(self, sid: str) -> float:
        return abs(self.positions[sid]["amt"]) * self.mark(sid) / self.leverage[sid]

    def available(self) -> float:
        """Cross wallet plus cross unrealised PnL, less every position's initial margin."""
        cross = [k for k in self.symbols if self.margin_type[k] == "CROSSED"]
        isolated = sum(self.positions[k]["margin"] for k in self.symbols
                       if self.margin_type[k] == "ISOLATED")
        return (self.wallet - isolated + sum(self.upnl(k) for k in cross)
                - sum(self.initial_margin(k) for k in cross))

    def liquidation_price(self, sid: str) -> float:
        p = self.positions[sid]
        q = abs(p["amt"])
        if q == 0:
            return 0.0
        side = 1.0 if p["amt"] > 0 else -1.0
        _, _, _, mmr, cum = bracket_of(q * p["entry"])
        if self.margin_type[sid] == "ISOLATED":
            wb, tmm, upnl = p["margin"], 0.0, 0.0
        else:
            others = [k for k in self.symbols if k != sid
                      and self.margin_type[k] == "CROSSED"]
            isolated = sum(self.positions[k]["margin"] for k in self.symbols
                           if self.margin_type[k] == "ISOLATED")
            wb = self.wallet - isolated
            tmm = sum(self.maint_margin(k) for k in others)
            upnl = sum(self.upnl(k) for k in others)
        lp = (wb - tmm + upnl + cum - side * q * p["entry"]) / (q * mmr - side * q)
        return max(lp, 0.0)

    def book_income(self, sid: str, kind: str, amount: float, trade_id: Any = "",
                    info: str = "") -> None:
        tran = self._next_tran[kind] = self._next_tran.get(kind, 900_000) + 1
        self.income.append({"symbol": sid, "incomeType": kind, "income": fmt(amount),
                            "asset": "USDT", "info": info or kind, "time": self.now_ms(),
                            "tranId": tran, "tradeId": str(trade_id)})

    # ------------------------------------------------------------------ test helpers

    def charge_funding(self, sid: str, rate: float | None = None) -> float:
        """One funding settlement on ``sid``'s position: what the account received (< 0
        when it paid). Longs pay shorts when the rate is positive."""
        with self._lock:
            s = self.symbols[sid]
            rate = float(s["funding_rate"]) if rate is None else rate
            amt = self.positions[sid]["amt"]
            if amt == 0:
                return 0.0
            paid = -amt * self.mark(sid) * rate
            self.wallet += paid
            self.book_income(sid, "FUNDING_FEE", paid)
            return paid

    # ------------------------------------------------------------------ endpoints

    def position_row(self, sid: str, v2: bool) -> dict[str, Any]:
        p, mark = self.positions[sid], self.mark(sid)
        isolated = self.margin_type[sid] == "ISOLATED"
        row: dict[str, Any] = {
            "symbol": sid, "positionSide": "BOTH", "positionAmt": fmt(p["amt"], 3),
            "entryPrice": fmt(p["entry"]), "breakEvenPrice": fmt(p["entry"]),
            "markPrice": fmt(mark), "unRealizedProfit": fmt(self.upnl(sid)),
            "liquidationPrice": fmt(self.liquidation_price(sid)),
            "isolatedMargin": fmt(p["margin"] + self.upnl(sid) if isolated else 0.0),
            "notional": fmt(p["amt"] * mark), "isolatedWallet": fmt(p["margin"]),
            "updateTime": int(p["update"])}
        if v2:
            row.update(leverage=str(self.leverage[sid]), maxNotionalValue="50000",
                       marginType="isolated" if isolated else "cross",
                       isAutoAddMargin="false")
        else:
            row.update(initialMargin=fmt(self.initial_margin(sid)),
                       maintMargin=fmt(self.maint_margin(sid)),
                       positionInitialMargin=fmt(self.initial_margin(sid)),
                       openOrderInitialMargin="0", adl=0, bidNotional="0", askNotional="0",
                       marginAsset="USDT")
        return row

    def position_risk(self, q: dict[str, str], v2: bool) -> tuple[int, Any]:
        sid = q.get("symbol")
        if sid is not None and sid not in self.symbols:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        rows = [self.position_row(k, v2) for k in self.symbols
                if (sid is None or k == sid) and (v2 or self.positions[k]["amt"] != 0)]
        return 200, rows

    def _has_open_orders(self, sid: str | None) -> bool:
        return any(o["status"] in ("NEW", "PARTIALLY_FILLED") for o in self.orders
                   if sid is None or o["symbol"] == sid) or any(
            a["algoStatus"] == "NEW" for a in self.algo_orders
            if sid is None or a["symbol"] == sid)

    def set_leverage(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol", "")
        if sid not in self.symbols:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        lev = int(q.get("leverage", "0"))
        if not 1 <= lev <= BRACKETS[0][2]:
            return 400, {"code": -4028, "msg": f"Leverage {lev} is not valid"}
        self.leverage[sid] = lev
        return 200, {"leverage": lev, "maxNotionalValue": "50000", "symbol": sid}

    def set_margin_type(self, q: dict[str, str]) -> tuple[int, Any]:
        sid, kind = q.get("symbol", ""), q.get("marginType", "")
        if sid not in self.symbols:
            return 400, {"code": -1121, "msg": "Invalid symbol."}
        if kind not in ("ISOLATED", "CROSSED"):
            return 400, {"code": -1116, "msg": "Invalid marginType."}
        if self.margin_type[sid] == kind:
            return 400, {"code": -4046, "msg": "No need to change margin type."}
        if self.positions[sid]["amt"] != 0:
            return 400, {"code": -4048,
                         "msg": "Margin type cannot be changed if there exists position."}
        if self._has_open_orders(sid):
            return 400, {"code": -4047,
                         "msg": "Margin type cannot be changed if there exists open orders."}
        self.margin_type[sid] = kind
        return 200, {"code": 200, "msg": "success"}

    def set_position_mode(self, q: dict[str, str]) -> tuple[int, Any]:
        dual = q.get("dualSidePosition", "").lower() == "true"
        if dual == self.dual_side:
            return 400, {"code": -4059, "msg": "No need to change position side."}
        if any(p["amt"] != 0 for p in self.positions.values()):
            return 400, {"code": -4068,
                         "msg": "Position side cannot be changed if there exists position."}
        if self._has_open_orders(None):
            return 400, {"code": -4067,
                         "msg": "Position side cannot be changed if there exists open orders."}
        self.dual_side = dual
        return 200, {"code": 200, "msg": "success"}

    def symbol_config(self, q: dict[str, str]) -> tuple[int, Any]:
        sid = q.get("symbol")
        return 200, [{"symbol": k, "marginType": self.margin_type[k],
                      "isAutoAddMargin": False, "leverage": self.leverage[k],
                      "maxNotionalValue": "50000"}
                     for k in self.symbols if sid is None or k == sid]

    def income_history(self, q: dict[str, str]) -> tuple[int, Any]:
        now = self.now_ms()
        end = int(q.get("endTime", now))
        start = int(q.get("startTime", end - SEVEN_DAYS_MS))
        limit = min(int(q.get("limit", 100)), 1000)
        kept = now - KEPT_MS
        rows = [r for r in self.income
                if max(start, kept) <= r["time"] <= end
                and ("symbol" not in q or r["symbol"] == q["symbol"])
                and ("incomeType" not in q or r["incomeType"] == q["incomeType"])]
        return 200, rows[:limit]

    def account_v3(self) -> tuple[int, Any]:
        now = self.now_ms()
        upnl = sum(self.upnl(k) for k in self.symbols)
        im = sum(self.initial_margin(k) for k in self.symbols)
        mm = sum(self.maint_margin(k) for k in self.symbols)
        avail = self.available()
        asset = {"asset": "USDT", "walletBalance": fmt(self.wallet),
                 "unrealizedProfit": fmt(upnl), "marginBalance": fmt(self.wallet + upnl),
                 "maintMargin": fmt(mm), "initialMargin": fmt(im),
                 "positionInitialMargin": fmt(im), "openOrderInitialMargin": fmt(0.0),
                 "crossWalletBalance": fmt(self.wallet), "crossUnPnl": fmt(upnl),
                 "availableBalance": fmt(avail), "maxWithdrawAmount": fmt(max(avail, 0.0)),
                 "updateTime": now}
        return 200, {
            "totalInitialMargin": fmt(im), "totalMaintMargin": fmt(mm),
            "totalWalletBalance": fmt(self.wallet), "totalUnrealizedProfit": fmt(upnl),
            "totalMarginBalance": fmt(self.wallet + upnl),
            "totalPositionInitialMargin": fmt(im), "totalOpenOrderInitialMargin": fmt(0.0),
            "totalCrossWalletBalance": fmt(self.wallet), "totalCrossUnPnl": fmt(upnl),
            "availableBalance": fmt(avail), "maxWithdrawAmount": fmt(max(avail, 0.0)),
            "assets": [asset],
            "positions": [{"symbol": k, "positionSide": "BOTH",
                           "positionAmt": fmt(self.positions[k]["amt"], 3),
                           "unrealizedProfit": fmt(self.upnl(k)),
                           "isolatedMargin": fmt(self.positions[k]["margin"]),
                           "notional": fmt(self.positions[k]["amt"] * self.mark(k)),
                           "isolatedWallet": fmt(self.positions[k]["margin"]),
                           "initialMargin": fmt(self.initial_margin(k)),
                           "maintMargin": fmt(self.maint_margin(k)),
                           "updateTime": int(self.positions[k]["update"])}
                          for k in self.symbols if self.positions[k]["amt"] != 0]}
