"""What a ccxt error from Binance means for us, decided by Binance's own error code.

Why by code and not by ccxt's exception class: ``ccxt.binance.handle_errors`` picks its
exception maps by the request URL (``get_exceptions_by_url``): the spot map applies only
to ``https://api.binance.com/...`` and the testnet hosts. Behind a proxy or a loopback URL
(``[broker] ccxt_api_urls``) only ccxt's general map applies, and the same answer can
reach us as another class (a plain ``ExchangeError`` where production raises
``InsufficientFunds``), so a rejection would take the ``unknown`` branch. The numeric
``code`` of Binance's JSON error body (``{"code": -2010, "msg": ...}``) is the venue's
documented contract, the same whatever the URL or the ccxt version; the HTTP status is
used for the rate-limit answers (429, 418), which ccxt raises as ``DDoSProtection``.

Sources (Binance Spot API documentation):
- "HTTP Return Codes" (developers.binance.com/docs/binance-spot-api-docs/rest-api/
  http-return-codes): 4XX are malformed requests, the issue on the sender's side (the
  request was refused); 429 a broken request rate limit; 418 an IP auto-banned for
  continuing after 429s; 5XX internal errors whose execution status is UNKNOWN.
- "LIMITS" (rest-api, IP limits): back off on 429; a ``Retry-After`` header comes with
  418 and 429.
- "Error codes for Binance" (developers.binance.com/docs/binance-spot-api-docs/errors):
  -1000 UNKNOWN, -1001 DISCONNECTED, -1006 UNEXPECTED_RESP and -1007 TIMEOUT ("execution
  status unknown"), -1008 SERVER_BUSY; -1003 TOO_MANY_REQUESTS and -1015 TOO_MANY_ORDERS;
  -1021 INVALID_TIMESTAMP ("outside of the recvWindow"); -1022 INVALID_SIGNATURE,
  -2014/-2015 key errors; -1013 filter failures ("Filter failure: LOT_SIZE", ...); 11xx
  request issues (-1111 BAD_PRECISION, -1121 BAD_SYMBOL, ...); -2010 NEW_ORDER_REJECTED
  (its ``msg`` tells: "Duplicate order sent.", "Account has insufficient balance for
  requested action.", ...); -2011 CANCEL_REJECTED ("Unknown order sent."); -2013
  NO_SUCH_ORDER ("Order does not exist.").

USD-M futures ("Error Codes", developers.binance.com/docs/derivatives/usds-margined-
futures/error-code) share the 10xx/11xx codes and -2011/-2013, and add their own 20xx and
4xxx: -2018 balance and -2019 "Margin is insufficient."; -2021 "Order would immediately
trigger." and -2022 "ReduceOnly Order is rejected." (on *spot* the same two numbers mean a
cancel-replace that failed in part or in full, so they count only with ``futures=True``);
-4164 "Order's notional must be no smaller than ..."; -4120 "Order type not supported for
this endpoint. Please use the Algo Order API endpoints instead." (conditional types since
2025-12-09); -4116 "ClientOrderId is duplicated." (an open order has our id: look it up);
-4046 "No need to change margin type." and -4059 "No need to change position side."
(already as asked: success). ccxt's ``binanceusdm`` puts ``self.id`` before the body
("binanceusdm {...}"); the code is read the same way.

``venue_error`` turns a ccxt error into our ``VenueError`` tree (domain/errors.py) by the
same code: the refusals a caller branches on get their own class (``InsufficientFunds``,
``OrderTooSmall``, ``OrderWouldTrigger``, ``ReduceOnlyRejected``), other refusals are
``PermanentVenueError``, what may pass later ``TemporaryVenueError``, an unknown outcome a
plain ``VenueError``. So a test against the loopback fakes raises what production raises.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from domain.errors import (
    InsufficientFunds,
    OrderTooSmall,
    OrderWouldTrigger,
    PermanentVenueError,
    ReduceOnlyRejected,
    TemporaryVenueError,
    VenueError,
)

_CODE = re.compile(r'"code"\s*:\s*(-?\d+)')
_MSG = re.compile(r'"msg"\s*:\s*"((?:[^"\\]|\\.)*)"')
_STATUS = re.compile(r"^\S+ (418|429) ")


class Outcome(StrEnum):
    TIMESTAMP = "timestamp"  # refused for its timestamp: resync the clock, then again
    REJECTED = "rejected"  # refused for good: nothing was placed, do not retry as is
    DUPLICATE = "duplicate"  # an open order with this client id exists: look it up
    NOT_FOUND = "not_found"  # no such order (query or cancel)
    RATE_LIMITED = "rate_limited"  # refused, back off (429, 418 ban, -1003, -1015)
    TRANSIENT = "transient"  # network or server side: outcome unknown, a read may retry
    UNCHANGED = "unchanged"  # a setting already as asked (-4046, -4059): success
    OTHER = "other"  # not a documented answer: outcome unknown


@dataclass(frozen=True, slots=True)
class Classified:
    outcome: Outcome
    code: int | None
    message: str


# Binance codes with one meaning whatever the message.
_BY_CODE: dict[int, Outcome] = {
    -1000: Outcome.TRANSIENT, -1001: Outcome.TRANSIENT, -1006: Outcome.TRANSIENT,
    -1007: Outcome.TRANSIENT, -1008: Outcome.TRANSIENT, -1016: Outcome.TRANSIENT,
    -1003: Outcome.RATE_LIMITED, -1015: Outcome.RATE_LIMITED,
    -1021: Outcome.TIMESTAMP,
    -1002: Outcome.REJECTED, -1013: Outcome.REJECTED, -1014: Outcome.REJECTED,
    -1020: Outcome.REJECTED, -1022: Outcome.REJECTED, -2014: Outcome.REJECTED,
    -2015: Outcome.REJECTED,
    -2011: Outcome.NOT_FOUND, -2013: Outcome.NOT_FOUND,
}

# USD-M futures codes (the "Error Codes" page of the USD-M API), read only with futures=True.
_FUTURES_BY_CODE: dict[int, Outcome] = {
    **dict.fromkeys((-2018, -2019, -2020, -2021, -2022, -2023, -2024, -2025, -2026, -2027,
                     -2028, -4003, -4005, -4013, -4014, -4015, -4028, -4045, -4047, -4048,
                     -4061, -4067, -4068, -4120, -4131, -4164, -5021, -5022),
                    Outcome.REJECTED),
    -4116: Outcome.DUPLICATE,
    -4046: Outcome.UNCHANGED, -4059: Outcome.UNCHANGED,
}

# The refusals a caller branches on, by code (futures) or by code and message (spot).
_FUTURES_CLASS: dict[int, type[PermanentVenueError]] = {
    -2018: InsufficientFunds, -2019: InsufficientFunds, -2021: OrderWouldTrigger,
    -2022: ReduceOnlyRejected, -4164: OrderTooSmall,
}
_SPOT_CLASS: tuple[tuple[int, str, type[PermanentVenueError]], ...] = (
    (-2010, "insufficient balance", InsufficientFunds),
    (-2010, "would trigger immediately", OrderWouldTrigger),
    (-1013, "NOTIONAL", OrderTooSmall),
)


def exchange_code(exc: BaseException) -> int | None:
    """The exchange's numeric error code inside a ccxt message (``binance {"code":-1021,..}``)."""
    m = _CODE.search(str(exc))
    return int(m.group(1)) if m else None


def exchange_message(exc: BaseException) -> str:
    m = _MSG.search(str(exc))
    return m.group(1) if m else ""


def classify(exc: BaseException, *, futures: bool = False) -> Classified:
    """Binance's code first (with ``futures``, the USD-M codes too), then the HTTP status of
    a rate-limit answer, then (no code: a dropped connection, a timeout, an HTML error
    page) ccxt's class."""
    import ccxt

    code = exchange_code(exc)
    message = exchange_message(exc)
    outcome = _BY_CODE.get(code) if code is not None else None
    if outcome is None and futures and code is not None:
        outcome = _FUTURES_BY_CODE.get(code)
    if outcome is None and code == -2010:
        outcome = Outcome.DUPLICATE if "Duplicate order" in message else Outcome.REJECTED
    if outcome is None and code is not None and -1199 <= code <= -1100:
        outcome = Outcome.REJECTED  # 11xx: request issues (parameters, precision, symbol)
    if outcome is None and (_STATUS.match(str(exc)) or isinstance(exc, ccxt.DDoSProtection)):
        outcome = Outcome.RATE_LIMITED
    if outcome is None:
        outcome = _by_class(exc, ccxt)
    return Classified(outcome, code, message)


def venue_error(exc: BaseException, what: str, *, futures: bool = False) -> VenueError:
    """The error of our tree a ccxt error means, decided by Binance's code (the class ccxt
    chose depends on the URL); the message names the call, the code and the venue's text."""
    seen = classify(exc, futures=futures)
    text = f"{what}: {seen.message or str(exc)[:300]}"
    if seen.code is not None:
        text = f"{what} ({seen.code}): {seen.message or str(exc)[:300]}"
    special = _special_class(exc, seen, futures)
    if special is not None:
        return special(text)
    if seen.outcome in (Outcome.REJECTED, Outcome.NOT_FOUND):
        return PermanentVenueError(text)
    if seen.outcome in (Outcome.TIMESTAMP, Outcome.TRANSIENT, Outcome.RATE_LIMITED):
        return TemporaryVenueError(text)
    return VenueError(text, retryable=False)  # duplicate id, unchanged, unknown: not a send


def _special_class(exc: BaseException, seen: Classified,
                   futures: bool) -> type[PermanentVenueError] | None:
    """By code, or by the venue's text where ccxt matched the message exactly and raised
    ``"binance " + msg`` without the code (its general map knows some messages)."""
    if futures and seen.code in _FUTURES_CLASS:
        return _FUTURES_CLASS[seen.code]
    text = (seen.message or str(exc)).lower()
    for code, words, cls in _SPOT_CLASS:
        if seen.code in (code, None) and words.lower() in text:
            return cls
    return None


def _by_class(exc: BaseException, ccxt: Any) -> Outcome:
    if isinstance(exc, ccxt.InvalidNonce):
        return Outcome.TIMESTAMP
    if isinstance(exc, ccxt.OrderNotFound):
        return Outcome.NOT_FOUND
    if isinstance(exc, ccxt.NetworkError):
        return Outcome.TRANSIENT
    if isinstance(exc, (ccxt.InsufficientFunds, ccxt.InvalidOrder, ccxt.BadSymbol,
                        ccxt.BadRequest, ccxt.AuthenticationError, ccxt.OperationRejected)):
        return Outcome.REJECTED
    return Outcome.OTHER
