"""The charts' axes: counts on integer axes, milliseconds and rates in formats of their own."""

from __future__ import annotations

from typing import Any

import pandas as pd

from streamml.dashboard import charts, frames_live


def y_axis(chart: Any) -> dict[str, Any]:
    return dict(chart.to_dict()["encoding"]["y"])


def test_lag_charts_have_integer_axes_even_when_every_lag_is_zero() -> None:
    zero = frames_live.lag_frame({"0": 0, "1": 0})
    y = y_axis(charts.lag_bars(zero))
    assert y["axis"]["format"] == ",d" and y["axis"]["tickMinStep"] == 1
    assert y["scale"]["domain"] == [0, 10]  # never a degenerate [0, 0] axis of fractional ticks
    assert "messages" in y["title"]

    group_lag = pd.DataFrame(
        {"group": ["g", "g"], "state": ["stable"] * 2, "topic": ["t", "t"], "partition": [0, 1],
         "committed": [5, None], "end": [5, 3], "lag": [0, 3]}
    )  # fmt: skip
    y = y_axis(charts.group_lag_bars(group_lag))
    assert y["axis"]["format"] == ",d" and y["axis"]["tickMinStep"] == 1
    assert y["scale"]["domain"] == [0, 10] and "messages" in y["title"]
    big = group_lag.assign(lag=[0, 123_456])
    assert y_axis(charts.group_lag_bars(big))["scale"]["domain"] == [0, 123_456]


def test_the_histograms_counts_are_integers() -> None:
    chart = charts.error_histogram(frames_live.error_histogram([0.1, 0.2]))
    y = y_axis(chart)
    assert y["axis"]["format"] == ",d" and y["axis"]["tickMinStep"] == 1
    tooltips = {t["field"]: t for t in chart.to_dict()["encoding"]["tooltip"]}
    assert tooltips["count"]["title"] == "count"  # the browser test reads "count: N" from each bar's aria-label


def test_lines_format_the_value_axis_and_tooltip_alike() -> None:
    frame = pd.DataFrame(
        {"time": pd.to_datetime([0, 2], unit="s", utc=True), "series": ["p99", "p99"], "value": [12.0, 80.0],
         "segment": [0, 0]}
    )  # fmt: skip
    chart = charts.lines(frame, "latency (ms)", y_format=charts.MS_FORMAT)
    y = y_axis(chart)
    assert y["axis"]["format"] == ",.0f" and y["title"] == "latency (ms)"
    value = next(t for t in chart.to_dict()["encoding"]["tooltip"] if t["field"] == "value")
    assert value["format"] == ",.0f"
