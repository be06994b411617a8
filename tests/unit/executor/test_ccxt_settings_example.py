"""The example settings file documents every key of the ccxt broker sections, and the
commented block is valid as written once uncommented."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from executor.brokers.config import CcxtSettings, ResolverSettings, SwapSettings
from executor.settings import BrokerSettings

EXAMPLE = Path(__file__).resolve().parents[3] / "config" / "dta.example.toml"


def _broker_block() -> dict[str, object]:
    """The commented ``[broker]`` tables of the example, uncommented and parsed."""
    lines = EXAMPLE.read_text().splitlines()
    start = lines.index("# [broker]")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        text = line[1:].strip()
        if text and not re.match(r"^[\[\w]", text):
            continue  # a continuation comment
        block.append(text)
    return tomllib.loads("\n".join(block))["broker"]  # type: ignore[no-any-return]


def test_every_ccxt_broker_key_is_documented_and_valid() -> None:
    broker = _broker_block()
    documented = set(broker) - {"ccxt", "resolver", "swap"}
    assert documented >= set(BrokerSettings.model_fields) - {"mt5", "ccxt", "resolver", "swap"}
    assert "ccxt_api_urls" in documented
    assert set(broker["ccxt"]) == set(CcxtSettings.model_fields)  # type: ignore[arg-type]
    assert set(broker["resolver"]) == set(ResolverSettings.model_fields)  # type: ignore[arg-type]
    assert set(broker["swap"]) == set(SwapSettings.model_fields)  # type: ignore[arg-type]
    BrokerSettings.model_validate(broker)
