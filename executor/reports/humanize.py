"""Numbers as a trader reads them in a report: percentages with a % sign, money with its
currency and thousands separators, prices at the symbol's own digits, R-multiples with
their sign. Exports (CSV, JSON) keep the raw numbers; only the page shows these.

Missing values (``None``, NaN, infinity) read as an en dash, never as "nan" or "0".
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

__all__ = ["DASH", "count", "money", "pct", "price", "price_digits", "quote_currency",
           "r_multiple", "ratio"]

DASH = "–"
MINUS = "−"  # U+2212: a minus sign lines up with a plus sign in a proportional font
# Quote currencies a crypto symbol written without a separator may end in, longest first
# so that "USDT" wins over "USD" (BTCUSDT is priced in USDT).
_CRYPTO_QUOTES = ("FDUSD", "USDT", "USDC", "BUSD", "TUSD", "DAI", "BTC", "ETH", "BNB",
                  "EUR", "USD", "GBP", "JPY", "TRY", "BRL")
_FX = re.compile(r"^[A-Z]{6}$")
_MAX_DIGITS = 8


def _finite(v: float | int | None) -> bool:
    return v is not None and not isinstance(v, bool) and math.isfinite(v)


def _signed(text: str, v: float, signed: bool) -> str:
    if v < 0:
        return MINUS + text.lstrip("-")
    return ("+" + text) if signed and v > 0 else text


def pct(share: float | None, *, digits: int = 1, signed: bool = False) -> str:
    """A share (0.123) as a percentage ("12.3 %"); ``None`` as a dash."""
    if share is None or not _finite(share):
        return DASH
    v = share * 100.0
    text = f"{v:,.{digits}f}"
    if float(text.replace(",", "")) == 0:
        return f"{0:.{digits}f} %"
    return _signed(text, v, signed) + " %"


def money(amount: float | None, currency: str = "", *, signed: bool = False) -> str:
    """Money with two decimals, thousands separated and the currency after it
    ("−1,234.56 USD"); without a currency, the number alone."""
    if amount is None or not _finite(amount):
        return DASH
    text = f"{amount:,.2f}"
    if text in ("-0.00", "0.00"):
        text, amount = "0.00", 0.0
    out = _signed(text, amount, signed)
    return f"{out} {currency}" if currency else out


def price(value: float | None, digits: int) -> str:
    """A price rounded to the symbol's digits (5 for EURUSD, 3 for USDJPY)."""
    if value is None or not _finite(value):
        return DASH
    return f"{value:,.{max(0, min(digits, _MAX_DIGITS))}f}"


def r_multiple(value: float | None, *, digits: int = 2) -> str:
    """An R-multiple with its sign ("+1.50 R", "−1.00 R")."""
    if value is None or not _finite(value):
        return DASH
    return _signed(f"{value:.{digits}f}", value, True) + " R"


def ratio(value: float | None, *, digits: int = 2) -> str:
    """A plain ratio (Sharpe, profit factor)."""
    if value is None or not _finite(value):
        return DASH
    return _signed(f"{value:,.{digits}f}", value, False)


def count(n: int | None) -> str:
    return DASH if n is None else f"{n:,}"


def price_digits(prices: Iterable[float], *, point: float | None = None,
                 sample: int = 500) -> int:
    """The symbol's digits: from its point when known (0.00001 -> 5), else the most
    decimals among the first ``sample`` prices (MT5 drops trailing zeros, so one price
    is not enough), at most 8."""
    if point is not None and point > 0:
        return max(0, min(_MAX_DIGITS, round(-math.log10(point))))
    most = 0
    for i, p in enumerate(prices):
        if i >= sample:
            break
        if _finite(p):
            text = repr(float(p))
            if "e" in text:
                return _MAX_DIGITS
            decimals = len(text.split(".")[1].rstrip("0")) if "." in text else 0
            most = max(most, decimals)
    return min(most, _MAX_DIGITS)


def quote_currency(symbol: str) -> str:
    """The currency a symbol's PnL is in (the paper broker books price moves times volume
    times contract size, so PnL is in the quote currency): "USD" for EURUSD, "USDT" for
    BTC/USDT and BTCUSDT; "" when the symbol does not say."""
    s = symbol.upper().replace(":", "/").split("/")
    if len(s) >= 2 and s[1]:
        return s[1]
    name = s[0].replace("-", "").replace("_", "")
    if _FX.match(name):
        return name[3:]
    for quote in _CRYPTO_QUOTES:
        if name.endswith(quote) and len(name) > len(quote):
            return quote
    return ""
