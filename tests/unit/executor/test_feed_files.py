"""Bar file readers: MT5 CSV/TSV exports and ccxt OHLCV JSON."""

from __future__ import annotations

import hashlib
import json
import math
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from domain.errors import ConfigError, DataFormatError
from executor.feeds.base import RawRejection
from executor.feeds.files import load_bars

ROOT = Path(__file__).resolve().parents[3]
SAMPLE = ROOT / "config" / "samples" / "EURUSD_M15.csv"
DATA = Path(__file__).resolve().parents[2] / "data"
HEADER = "Date,Open,High,Low,Close,Tickvol,Volume,Spread"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# --------------------------------------------------------------------------- the sample


def test_sample_loads_all_rows_with_names_from_filename() -> None:
    started = time.perf_counter()
    loaded = load_bars(SAMPLE)
    elapsed = time.perf_counter() - started

    assert (loaded.symbol, loaded.timeframe) == ("EURUSD", "M15")
    assert len(loaded.bars) == 24_424
    assert loaded.rejected == ()
    assert loaded.format == "mt5_csv"
    assert loaded.point == pytest.approx(0.00001)
    assert loaded.sha256 == hashlib.sha256(SAMPLE.read_bytes()).hexdigest()
    assert loaded.source == str(SAMPLE)

    first = loaded.bars[0]
    assert first.time == datetime(2022, 10, 10, 0, 0, tzinfo=UTC)
    assert (first.open, first.high, first.low, first.close) == (0.97312, 0.97369, 0.97312, 0.97357)
    assert first.volume == 60.0  # Volume column is 0 for FX: tick volume is used
    assert first.spread == 0.0002  # 20 points of 0.00001, rounded exactly
    assert loaded.bars[-1].time == datetime(2023, 10, 2, 6, 45, tzinfo=UTC)
    # A loose guard against pathological slowdowns; the real number is ~0.15 s.
    assert elapsed < 2.0


def test_server_offset_is_subtracted_to_get_utc() -> None:
    loaded = load_bars(SAMPLE, server_utc_offset_hours=3)
    assert loaded.bars[0].time == datetime(2022, 10, 9, 21, 0, tzinfo=UTC)
    assert loaded.bars[0].time.tzinfo is UTC


def test_fractional_and_negative_offsets(tmp_path: Path) -> None:
    path = write(tmp_path / "X_M15.csv", f"{HEADER}\n2023.01.02 00:00:00,1,1,1,1,1,0,0\n")
    assert load_bars(path, server_utc_offset_hours=5.5).bars[0].time == datetime(
        2023, 1, 1, 18, 30, tzinfo=UTC
    )
    assert load_bars(path, server_utc_offset_hours=-2).bars[0].time == datetime(
        2023, 1, 2, 2, 0, tzinfo=UTC
    )


def test_explicit_names_override_filename() -> None:
    loaded = load_bars(SAMPLE, symbol="EURUSD.r", timeframe="15m")
    assert (loaded.symbol, loaded.timeframe) == ("EURUSD.r", "M15")
    assert loaded.bars[0].symbol == "EURUSD.r"
    assert loaded.bars[0].timeframe == "M15"


# --------------------------------------------------------------------------- MT5 TSV


def test_mt5_tab_separated_bars_export() -> None:
    loaded = load_bars(DATA / "GBPUSD_H1.tsv")
    assert (loaded.symbol, loaded.timeframe) == ("GBPUSD", "H1")
    assert loaded.rejected == ()
    assert [b.time for b in loaded.bars] == [
        datetime(2023, 1, 2, h, 0, tzinfo=UTC) for h in range(3)
    ]
    assert loaded.bars[0].close == 1.2083
    assert loaded.bars[0].spread == 0.00012
    assert loaded.bars[0].volume == 312.0
    assert loaded.bars[2].volume == 1500.0  # real volume wins when the broker has it


def test_mt5_export_in_utf16(tmp_path: Path) -> None:
    """MT5 writes some exports as UTF-16 with a byte order mark."""
    text = (DATA / "GBPUSD_H1.tsv").read_text(encoding="utf-8")
    path = tmp_path / "GBPUSD_H1.csv"
    path.write_bytes(text.encode("utf-16"))
    loaded = load_bars(path)
    assert len(loaded.bars) == 3
    assert loaded.rejected == ()


def test_utf8_bom_and_quoted_fields(tmp_path: Path) -> None:
    path = tmp_path / "EURUSD_M5.csv"
    path.write_bytes(
        (
            '\ufeff"Date","Open","High","Low","Close","Tickvol","Volume","Spread"\n'
            '"2023.01.02 00:05:00","1.1","1.2","1.0","1.15","7","0","3"\n'
        ).encode()
    )
    (bar,) = load_bars(path).bars
    assert bar.time == datetime(2023, 1, 2, 0, 5, tzinfo=UTC)
    assert bar.spread == pytest.approx(0.03)  # prices have 2 decimals -> point 0.01


def test_point_inferred_from_max_decimals_and_overridable(tmp_path: Path) -> None:
    path = write(
        tmp_path / "USDJPY_M1.csv",
        f"{HEADER}\n2023.01.02 00:00:00,130.5,130.6,130.4,130.5,1,0,10\n"
        "2023.01.02 00:01:00,130.512,130.62,130.41,130.5,1,0,10\n",
    )
    loaded = load_bars(path)
    assert loaded.point == pytest.approx(0.001)
    assert loaded.bars[0].spread == 0.01
    assert load_bars(path, point=0.01).bars[0].spread == 0.1


def test_rows_are_kept_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path / "EURUSD_M15.csv",
        f"{HEADER}\n"
        "2023.01.02 00:30:00,1,1,1,1,1,0,0\n"
        "2023.01.02 00:00:00,1,1,1,1,1,0,0\n"
        "2023.01.02 00:00:00,1,1,1,1,1,0,0\n",
    )
    assert [b.time.minute for b in load_bars(path).bars] == [30, 0, 0]


# --------------------------------------------------------------------------- bad rows


def test_bad_rows_become_raw_rejections_with_line_numbers(tmp_path: Path) -> None:
    path = write(
        tmp_path / "EURUSD_M15.csv",
        "\n"  # line 1: leading blank line still counts
        f"{HEADER}\n"  # line 2
        "2023.01.02 00:00:00,1.1,1.2,1.0,1.15,5,0,2\n"  # 3 ok
        "2023.01.02 00:15:00,1.1,1.2\n"  # 4 too few columns
        "\n"  # 5 blank: skipped silently
        "yesterday,1.1,1.2,1.0,1.15,5,0,2\n"  # 6 unparsable timestamp
        "2023.13.02 00:30:00,1.1,1.2,1.0,1.15,5,0,2\n"  # 7 month 13
        "2023.01.02 25:00:00,1.1,1.2,1.0,1.15,5,0,2\n"  # 8 hour 25
        "2023.01.02 00:45:00,1.1,1.2,1.0,1.15,5,0,2,9\n"  # 9 too many columns
        "2023.01.02 01:00:00,1.1,1.2,1.0,1.15,5,0,2\n",  # 10 ok
    )
    loaded = load_bars(path)
    assert [b.time.hour for b in loaded.bars] == [0, 1]
    assert [r.line for r in loaded.rejected] == [4, 6, 7, 8, 9]
    by_line = {r.line: r for r in loaded.rejected}
    assert by_line[4] == RawRejection(4, "expected 8 columns, got 3", "2023.01.02 00:15:00,1.1,1.2")
    assert "unparsable timestamp 'yesterday'" in by_line[6].reason
    assert "invalid timestamp" in by_line[7].reason
    assert "invalid timestamp" in by_line[8].reason
    assert "got 9" in by_line[9].reason


def test_unparsable_numbers_are_rejected_rows_naming_the_field(tmp_path: Path) -> None:
    """Text that is no number is not "NaN or infinite": the row is set aside with its line
    and the field and text it held. A literal ``nan`` does parse, and reaches the
    validator as the NaN it is."""
    path = write(
        tmp_path / "EURUSD_M15.csv",
        f"{HEADER}\n"
        "2023.01.02 00:00:00,1.1,abc,1.0,1.15,5,0,2\n"
        "2023.01.02 00:15:00,1.1,1.2,1.0,1.15,5,x,2\n"
        "2023.01.02 00:30:00,1.1,1.2,1.0,1.15,5,0,\n"
        "2023.01.02 00:45:00,1.1,nan,1.0,1.15,5,0,2\n",
    )
    loaded = load_bars(path)
    assert [(r.line, r.reason) for r in loaded.rejected] == [
        (2, "high 'abc' is not a number"),
        (3, "volume 'x' is not a number"),  # a bad real volume never falls back to tickvol
        (4, "spread '' is not a number"),
    ]
    assert len(loaded.bars) == 1 and math.isnan(loaded.bars[0].high)
    assert "NaN" not in " ".join(r.reason for r in loaded.rejected)


# --------------------------------------------------------------------------- ccxt JSON


def test_ccxt_bare_list() -> None:
    loaded = load_bars(DATA / "BTCUSDT_1h.json")
    assert (loaded.symbol, loaded.timeframe, loaded.format) == ("BTCUSDT", "H1", "ccxt_json")
    assert [b.time for b in loaded.bars] == [datetime(2023, 1, 1, h, tzinfo=UTC) for h in range(3)]
    assert loaded.bars[0].volume == 4364.8357
    assert all(b.spread == 0.0 for b in loaded.bars)
    assert loaded.point is None


def test_ccxt_object_names_win_over_filename() -> None:
    loaded = load_bars(DATA / "ethusdt-15m.json")
    assert (loaded.symbol, loaded.timeframe) == ("ETH/USDT", "M15")
    assert loaded.bars[1].time == datetime(2023, 1, 1, 0, 15, tzinfo=UTC)
    assert load_bars(DATA / "ethusdt-15m.json", symbol="ETHUSDT").symbol == "ETHUSDT"


def test_ccxt_timestamps_are_utc_whatever_the_server_offset() -> None:
    loaded = load_bars(DATA / "BTCUSDT_1h.json", server_utc_offset_hours=3)
    assert loaded.bars[0].time == datetime(2023, 1, 1, tzinfo=UTC)


def test_ccxt_bad_rows(tmp_path: Path) -> None:
    rows = [
        [1672531200000, 1.0, 2.0, 0.5, 1.5, None],  # 1: null volume: not a number
        [1672531260000, 1.0, 2.0],  # 2: wrong length
        ["2023-01-01", 1.0, 2.0, 0.5, 1.5, 1.0],  # 3: timestamp not a number
        [True, 1.0, 2.0, 0.5, 1.5, 1.0],  # 4: bool is not a timestamp
        {"t": 1},  # 5: not a list
        [1672531320000, "1.0", "oops", 0.5, 1.5, 1],  # 6: junk: not a number
        [1672531380000, "1.0", "2.5", 0.5, 1.5, 1],  # 7: string numbers parse
    ]
    path = write(tmp_path / "BTCUSDT_1m.json", json.dumps(rows))
    loaded = load_bars(path)
    assert [r.line for r in loaded.rejected] == [1, 2, 3, 4, 5, 6]
    assert loaded.rejected[0].reason == "volume None is not a number"
    assert loaded.rejected[5].reason == "high 'oops' is not a number"
    assert len(loaded.bars) == 1 and loaded.bars[0].high == 2.5
    assert loaded.rejected[1].raw == "[1672531260000, 1.0, 2.0]"


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("name", "symbol", "timeframe"),
    [
        ("EURUSD_M15.csv", "EURUSD", "M15"),
        ("BTCUSDT_1h.json", "BTCUSDT", "H1"),
        ("eurusd-m15.csv", "EURUSD", "M15"),
        ("EURUSDm_M5.csv", "EURUSDm", "M5"),  # broker suffixes keep their case
        ("XAUUSD_H4_2023.csv", "XAUUSD", "H4"),
        ("US30-D1.csv", "US30", "D1"),
    ],
)
def test_names_inferred_from_filename(
    tmp_path: Path, name: str, symbol: str, timeframe: str
) -> None:
    path = write(tmp_path / name, f"{HEADER}\n2023.01.02 00:00:00,1,1,1,1,1,0,0\n")
    loaded = load_bars(path)
    assert (loaded.symbol, loaded.timeframe) == (symbol, timeframe)


@pytest.mark.parametrize("name", ["bars.csv", "M15.csv", "EURUSD.csv"])
def test_unknown_names_ask_for_arguments(tmp_path: Path, name: str) -> None:
    path = write(tmp_path / name, f"{HEADER}\n2023.01.02 00:00:00,1,1,1,1,1,0,0\n")
    with pytest.raises(DataFormatError, match="--symbol/--timeframe"):
        load_bars(path)
    assert load_bars(path, symbol="EURUSD", timeframe="M15").timeframe == "M15"


def test_bad_explicit_timeframe_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown timeframe"):
        load_bars(SAMPLE, timeframe="fortnightly")


# --------------------------------------------------------------------------- file errors


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("  \n\n", "is empty"),
        (f"{HEADER}\n", "no bar rows"),
        ("time,price\n1,2\n", "unknown format"),
        ("[1, 2", "invalid JSON"),
        ("[]", "no OHLCV rows"),
        ('{"data": []}', '"ohlcv" list'),
    ],
)
def test_unreadable_files_raise_data_format_error(
    tmp_path: Path, content: str, message: str
) -> None:
    path = write(tmp_path / "EURUSD_M15.csv", content)
    with pytest.raises(DataFormatError, match=message):
        load_bars(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(DataFormatError, match="does not exist"):
        load_bars(tmp_path / "EURUSD_M15.csv")
    with pytest.raises(DataFormatError, match="is a directory"):
        load_bars(tmp_path)


@pytest.mark.parametrize("point", [0.0, -0.1, float("nan")])
def test_bad_point_is_a_config_error(point: float) -> None:
    with pytest.raises(ConfigError, match="point"):
        load_bars(SAMPLE, point=point)
