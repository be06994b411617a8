"""LLM and strategy tags are validated against one closed vocabulary."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.glossary import TAG_VALUES, TERMS, Tag, is_valid_tag, validate_tag, validate_tags


@pytest.mark.parametrize(
    ("raw", "tag"),
    [
        ("bos_bullish", Tag.BOS_BULLISH),
        ("BOS Bullish", Tag.BOS_BULLISH),
        ("  choch-bearish ", Tag.CHOCH_BEARISH),
        ("Liquidity Sweep Buyside", Tag.LIQUIDITY_SWEEP_BUYSIDE),
        ("fvg.bullish", Tag.FVG_BULLISH),
        ("PREMIUM", Tag.PREMIUM),
        ("mitigation_block_bearish", Tag.MITIGATION_BLOCK_BEARISH),
    ],
)
def test_normalises_case_and_separators(raw: str, tag: Tag) -> None:
    assert validate_tag(raw) is tag


@pytest.mark.parametrize("raw", ["", "bullish", "bos", "break_of_structure", "fvg_bull", "ob"])
def test_rejects_unknown_tags_with_the_value_in_the_message(raw: str) -> None:
    with pytest.raises(ValueError, match="unknown SMC tag"):
        validate_tag(raw)
    assert not is_valid_tag(raw)


def test_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="must be a string"):
        validate_tag(3)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_never_crashes_and_only_returns_known_tags(raw: str) -> None:
    try:
        tag = validate_tag(raw)
    except ValueError:
        return
    assert tag.value in TAG_VALUES


def test_validate_tags_dedupes_in_order() -> None:
    assert validate_tags(["premium", "BOS bullish", "Premium"]) == (Tag.PREMIUM, Tag.BOS_BULLISH)


def test_required_vocabulary_is_present() -> None:
    for value in ("bos_bullish", "choch_bearish", "liquidity_sweep_buyside", "fvg_bullish",
                  "order_block_bullish", "mitigation_block_bearish", "premium", "discount"):
        assert value in TAG_VALUES
    assert all(definition for definition in TERMS.values())
    assert any("fair value gap" in term for term in TERMS)
