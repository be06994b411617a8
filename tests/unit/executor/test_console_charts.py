"""The console chart's SMC context lands on the bars it names: a snapshot names bars by
stream index, anchored at the snapshot's own bar wherever that is among the bars shown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from support.builders import a_bar

from executor.console.charts import chart

T0 = datetime(2024, 1, 2, 9, 0, tzinfo=UTC)


def test_snapshot_indices_map_to_their_bars() -> None:
    bars = [a_bar(time=T0 + timedelta(minutes=15 * i)) for i in range(10)]
    # The snapshot is at bar 7 of the 10 shown (stream index 107); three bars follow it.
    snapshot = {"index": 107, "time": bars[7].time.isoformat(),
                "last_bos": [{"direction": "long", "level": 1.09, "index": 105}],
                "fvgs": [{"direction": "short", "top": 1.1, "bottom": 1.09, "index": 50}],
                "sweeps": [{"side": "low", "level": 1.08, "index": 90}]}
    data = chart(bars, snapshot=snapshot, levels={"entry": 1.085, "stop": None},
                 markers=[{"time": bars[9].time, "text": "fill"},
                          {"time": T0 - timedelta(days=1), "text": "outside"}])
    assert [m["text"] for m in data["markers"]] == ["BOS 1.09", "fill"]
    assert data["markers"][0]["time"] == int(bars[5].time.timestamp())
    # A zone formed before the bars shown starts at the first one.
    assert data["zones"] == [{"title": "FVG short", "top": 1.1, "bottom": 1.09,
                              "from": int(bars[0].time.timestamp()), "color": "#ef5350"}]
    assert data["lines"] == [{"title": "entry", "price": 1.085, "color": "#6cb4ff"}]
    assert len(data["candles"]) == 10 and data["end"] == int(bars[9].time.timestamp())


def test_volumes_read_as_lots_without_binary_noise() -> None:
    from executor.console.app import lots

    assert lots(sum([0.1] * 10)) == "1"  # 0.9999999999999999 on a netting exit fill
    assert lots(0.1) == "0.1" and lots(0.037500000000000006) == "0.0375"
    assert lots(None) == "—"
