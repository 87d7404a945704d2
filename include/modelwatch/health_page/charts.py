"""Charts as inline SVG, drawn on the server: no JavaScript, no fonts or files to fetch, so the page works offline.

Every chart is an ``<svg role="img">`` named by its ``<title>`` and summarised
by its ``<desc>``, with a visible title, axis labels and a legend. Each mark
carries a ``<title>`` tooltip and ``data-`` attributes saying what it shows,
which is also what the tests count:

- `line_chart`: one ``<circle class="point" data-interval=...>`` per interval with a value, the
  control limits as a shaded band, thresholds as dashed segments and one
  ``<path class="breach">`` diamond (red, unlike every other mark) per breached check row;
- `heatmap`: one ``<rect class="cell" data-feature=... data-interval=...>`` per feature and interval tested;
- `decision_strip`: one ``<rect class="decision" data-decision=...>`` per decided interval.

Every text that reaches the markup is escaped (`markupsafe`), whatever the warehouse holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime

from markupsafe import Markup, escape

WIDTH = 760
PLOT_LEFT, PLOT_RIGHT = 72, 16
HEATMAP_LEFT = 130
MAX_X_LABELS = 10
VALUE_COLOUR = "#1f5fa8"
BAND_COLOUR = "#8fb8de"
THRESHOLD_COLOUR = "#b35900"
BREACH_COLOUR = "#c4001a"
GRID_COLOUR = "#d9d9d9"
TEXT_COLOUR = "#222222"
DECISION_COLOURS = {
    "healthy": "#2e8540",
    "alert": "#e08a00",
    "retrain": "#1f5fa8",
    "rollback": "#7b3fa0",
    "halt": "#c4001a",
}
DRIFT_LEVELS = (
    ("no method flagged drift", "#dcefd9"),
    ("one method flagged drift", "#f4a259"),
    ("two or more methods flagged drift", "#b8360c"),
)
"""Heatmap colours by the number of test methods that flagged the feature, lightest first."""


@dataclass(frozen=True)
class Interval:
    """One position of a chart's time axis.

    Attributes
    ----------
    key : str
        The interval's start in ISO 8601 (UTC): the ``data-interval`` of its marks.
    label : str
        What the axis shows.
    """

    key: str
    label: str


@dataclass(frozen=True)
class Point:
    """A measured value of one interval, with its tooltip."""

    interval: str
    value: float
    note: str


@dataclass(frozen=True)
class Limits:
    """The lower and upper limit a check applied to one interval (None: no limit on that side)."""

    interval: str
    low: float | None
    high: float | None
    note: str


@dataclass(frozen=True)
class Breach:
    """A breached check row: where the judged value was, which check, and why."""

    interval: str
    value: float | None
    check_name: str
    note: str


@dataclass(frozen=True)
class Cell:
    """One heatmap cell: a row (feature), an interval, its level (index into `DRIFT_LEVELS`) and tooltip."""

    row: str
    interval: str
    level: int
    note: str


@dataclass(frozen=True)
class Mark:
    """One decided interval of a decision strip."""

    interval: str
    decision: str
    note: str


def number(value: float) -> str:
    """A value as the charts and tables show it: ``1,234``, ``123.4``, ``0.8158``."""
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
    return f"{value:.4g}"


def percent(value: float) -> str:
    """A share as a percentage: ``75.4%``."""
    return f"{value:.1%}"


def interval_axis(starts: Iterable[datetime]) -> list[Interval]:
    """The axis of the given interval starts: dates when every interval starts at midnight, else date and time."""
    starts = list(starts)
    daily = all(start.hour == start.minute == 0 for start in starts)
    return [Interval(start.isoformat(), start.strftime("%Y-%m-%d" if daily else "%Y-%m-%d %H:%M")) for start in starts]


def _tag(name: str, attributes: Mapping[str, object] | None = None, *children: str) -> Markup:
    """``<name attributes>children</name>``; attribute values and plain-text children are escaped."""
    rendered = "".join(f' {key}="{escape(value)}"' for key, value in (attributes or {}).items() if value is not None)
    body = Markup("").join(escape(child) for child in children)
    return Markup(f"<{name}{rendered}>{body}</{name}>")


def _text(x: float, y: float, content: str, **attributes: object) -> Markup:
    base = {"x": _px(x), "y": _px(y), "fill": TEXT_COLOUR, "font-size": 12}
    return _tag("text", base | {key.replace("_", "-"): value for key, value in attributes.items()}, content)


def _px(value: float) -> str:
    return f"{value:.1f}"


def _svg(kind: str, chart_id: str, title: str, summary: str, height: float, body: list[Markup],
         data: Mapping[str, str] | None = None) -> Markup:
    """The chart's root element, with its accessible name and description and a visible title."""
    attributes = {
        "xmlns": "http://www.w3.org/2000/svg",
        "viewBox": f"0 0 {WIDTH} {_px(height)}",
        "role": "img",
        "aria-labelledby": f"{chart_id}-title {chart_id}-desc",
        "class": f"chart {kind}",
        "id": chart_id,
        "data-chart": kind,
        "font-family": "system-ui, -apple-system, 'Segoe UI', sans-serif",
        **(data or {}),
    }
    return _tag(
        "svg", attributes,
        _tag("title", {"id": f"{chart_id}-title"}, title),
        _tag("desc", {"id": f"{chart_id}-desc"}, summary),
        _tag("rect", {"x": 0, "y": 0, "width": WIDTH, "height": _px(height), "fill": "#ffffff"}),
        _text(PLOT_LEFT, 18, title, font_size=14, font_weight="600"),
        *body,
    )


class _XScale:
    """Evenly spaced slots, one per interval, with the interval's mark at the slot's centre."""

    def __init__(self, axis: list[Interval], left: float):
        self.left, self.right = left, WIDTH - PLOT_RIGHT
        self.slot = (self.right - self.left) / max(len(axis), 1)
        self.index = {interval.key: position for position, interval in enumerate(axis)}

    def centre(self, key: str) -> float:
        return self.left + (self.index[key] + 0.5) * self.slot

    def ticks(self, axis: list[Interval], bottom: float) -> list[Markup]:
        """Labels of every k-th interval, so that at most `MAX_X_LABELS` show."""
        every = max(1, math.ceil(len(axis) / MAX_X_LABELS))
        return [_text(self.centre(interval.key), bottom + 16, interval.label, text_anchor="middle", font_size=11)
                for position, interval in enumerate(axis) if position % every == 0]


class _YScale:
    """A linear scale over round tick values that cover every value to draw."""

    def __init__(self, values: list[float], top: float, bottom: float, fixed: tuple[float, float] | None):
        self.top, self.bottom = top, bottom
        if fixed is not None:
            low, high = fixed
            self.ticks = _round_ticks(low, high)
            self.low, self.high = low, high
            return
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if low == high:  # a flat series still gets a readable scale around it, not below 0 if it never is
            pad = abs(low) * 0.1 or 1.0
            low, high = (low - pad if low < 0 or low - pad >= 0 else 0.0), high + pad
        self.ticks = _round_ticks(low, high)
        self.low, self.high = self.ticks[0], self.ticks[-1]

    def at(self, value: float) -> float:
        clamped = min(max(value, self.low), self.high)
        return self.bottom - (clamped - self.low) / (self.high - self.low) * (self.bottom - self.top)


def _round_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values (steps of 1, 2, 2.5 or 5 times a power of ten) from below `low` to above `high`."""
    raw = (high - low) / (count - 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = next(multiple * magnitude for multiple in (1, 2, 2.5, 5, 10) if multiple * magnitude >= raw)
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [tick * step for tick in range(first, last + 1)]


def _legend(items: list[tuple[Markup, str]], y: float) -> Markup:
    """Swatches and their labels in one row."""
    parts, x = [], PLOT_LEFT
    for swatch, label in items:
        parts.append(_tag("g", {"transform": f"translate({_px(x)},{_px(y)})"}, swatch,
                          _text(20, 4, label, font_size=11)))
        x += 34 + 6.2 * len(label)
    return _tag("g", {"class": "legend"}, *parts)


def _diamond(x: float, y: float, size: float = 7) -> str:
    return f"M{_px(x)},{_px(y - size)} L{_px(x + size)},{_px(y)} L{_px(x)},{_px(y + size)} L{_px(x - size)},{_px(y)} Z"


def line_chart(*, chart_id: str, title: str, y_label: str, axis: list[Interval], points: list[Point],
               limits: list[Limits] = (), thresholds: list[Limits] = (), breaches: list[Breach] = (),
               value_format: Callable[[float], str] = number, y_range: tuple[float, float] | None = None,
               judged: bool = True, data: Mapping[str, str] | None = None) -> Markup:
    """A metric over the intervals of `axis`, with its control limits, thresholds and breaches.

    Parameters
    ----------
    chart_id : str
        A page-unique id for the chart's element and its title.
    title, y_label : str
        The visible title and the vertical axis label.
    axis : list of Interval
        The time axis; every other argument names intervals of it by key.
    points : list of Point
        The measured values (intervals without one show no point).
    limits : list of Limits
        Control limits per interval, drawn as a band (an open side reaches the plot's edge).
    thresholds : list of Limits
        Fixed or relative thresholds per interval, drawn as dashed segments.
    breaches : list of Breach
        Breached check rows, drawn as red diamonds at the judged value.
    value_format : callable
        Formats tick labels.
    y_range : tuple of float, optional
        A fixed vertical range (e.g. 0 to 1 for a share); else the drawn values decide.
    judged : bool
        Whether checks judge the series: only then does the legend explain the breach marker.
    data : mapping, optional
        Extra ``data-`` attributes of the root element.

    Returns
    -------
    Markup
        The ``<svg>`` element.
    """
    height, top = 250.0, 34.0
    bottom = height - 78
    x = _XScale(axis, PLOT_LEFT)
    y = _YScale(_drawn_values(points, limits, thresholds, breaches), top, bottom, y_range)

    body: list[Markup] = []
    for tick in y.ticks:
        body.append(_tag("line", {"x1": PLOT_LEFT, "x2": _px(x.right), "y1": _px(y.at(tick)), "y2": _px(y.at(tick)),
                                  "stroke": GRID_COLOUR, "stroke-width": 1}))
        body.append(_text(PLOT_LEFT - 6, y.at(tick) + 4, value_format(tick), text_anchor="end", font_size=11))
    body.append(_tag("line", {"x1": PLOT_LEFT, "x2": _px(x.right), "y1": _px(bottom), "y2": _px(bottom),
                              "stroke": TEXT_COLOUR, "stroke-width": 1}))
    for mark in limits:
        upper = y.top if mark.high is None else y.at(mark.high)
        lower = y.bottom if mark.low is None else y.at(mark.low)
        body.append(_tag("rect", {"class": "control-limits", "data-interval": mark.interval,
                                  "x": _px(x.centre(mark.interval) - x.slot / 2), "width": _px(x.slot),
                                  "y": _px(upper), "height": _px(max(lower - upper, 1.0)),
                                  "fill": BAND_COLOUR, "fill-opacity": 0.45},
                         _tag("title", None, mark.note)))
    for mark in thresholds:
        for bound in (mark.low, mark.high):
            if bound is not None:
                body.append(_tag("line", {"class": "threshold", "data-interval": mark.interval,
                                          "x1": _px(x.centre(mark.interval) - x.slot / 2),
                                          "x2": _px(x.centre(mark.interval) + x.slot / 2),
                                          "y1": _px(y.at(bound)), "y2": _px(y.at(bound)),
                                          "stroke": THRESHOLD_COLOUR, "stroke-width": 2, "stroke-dasharray": "6 4"},
                                 _tag("title", None, mark.note)))
    body.append(_series_line(points, x, y))
    for point in points:
        body.append(_tag("circle", {"class": "point", "data-interval": point.interval, "data-value": repr(point.value),
                                    "cx": _px(x.centre(point.interval)), "cy": _px(y.at(point.value)), "r": 4,
                                    "fill": VALUE_COLOUR, "stroke": "#ffffff", "stroke-width": 1},
                         _tag("title", None, point.note)))
    body.extend(_breach_marks(breaches, x, y))
    body.extend(x.ticks(axis, bottom))
    body.append(_text((PLOT_LEFT + x.right) / 2, bottom + 36, "interval start (UTC)", text_anchor="middle"))
    body.append(_text(16, (top + bottom) / 2, y_label, text_anchor="middle",
                      transform=f"rotate(-90 16 {_px((top + bottom) / 2)})"))
    legend = [(_tag("circle", {"cx": 6, "cy": 0, "r": 4, "fill": VALUE_COLOUR}), "value")]
    if limits:
        legend.append((_tag("rect", {"x": 0, "y": -6, "width": 14, "height": 12, "fill": BAND_COLOUR,
                                     "fill-opacity": 0.45}), "control limits"))
    if thresholds:
        legend.append((_tag("line", {"x1": 0, "x2": 14, "y1": 0, "y2": 0, "stroke": THRESHOLD_COLOUR,
                                     "stroke-width": 2, "stroke-dasharray": "6 4"}), "threshold"))
    if judged:
        legend.append((_tag("path", {"d": _diamond(7, 0, 6), "fill": BREACH_COLOUR}), "breach"))
    body.append(_legend(legend, height - 16))
    summary = f"{len(points)} of {len(axis)} intervals measured"
    if judged:
        summary += f"; {len(breaches)} breached check{'s' if len(breaches) != 1 else ''}"
    return _svg("line-chart", chart_id, title, summary, height, body, data)


def _drawn_values(points: list[Point], limits: list[Limits], thresholds: list[Limits],
                  breaches: list[Breach]) -> list[float]:
    """The values the vertical scale must show.

    Control limits learnt from a short or noisy history can lie far from the
    data; they widen the scale by at most the data's own span on each side (the
    band is cut at the plot's edge), so that the values stay readable.
    """
    def bounds(marks: list[Limits]) -> list[float]:
        return [v for mark in marks for v in (mark.low, mark.high) if v is not None and math.isfinite(v)]

    core = [p.value for p in points] + [b.value for b in breaches if b.value is not None] + bounds(thresholds)
    if not core:
        return bounds(limits)
    low, high = min(core), max(core)
    span = (high - low) or abs(high) or 1.0
    return core + [min(max(v, low - span), high + span) for v in bounds(limits)]


def _series_line(points: list[Point], x: _XScale, y: _YScale) -> Markup:
    """The line through consecutive points; a gap where an interval has no value."""
    commands, previous = [], None
    for point in sorted(points, key=lambda p: x.index[p.interval]):
        position = x.index[point.interval]
        step = "L" if previous is not None and position == previous + 1 else "M"
        commands.append(f"{step}{_px(x.centre(point.interval))},{_px(y.at(point.value))}")
        previous = position
    return _tag("path", {"d": " ".join(commands) or None, "fill": "none", "stroke": VALUE_COLOUR, "stroke-width": 2})


def _breach_marks(breaches: list[Breach], x: _XScale, y: _YScale) -> list[Markup]:
    """A diamond per breached row; several on one interval stand side by side, so that each shows."""
    marks, seen = [], {}
    for breach in breaches:
        offset = 8 * seen.get(breach.interval, 0)
        seen[breach.interval] = seen.get(breach.interval, 0) + 1
        height = y.top if breach.value is None else y.at(breach.value)
        marks.append(_tag("path", {"class": "breach", "data-interval": breach.interval, "data-check": breach.check_name,
                                   "d": _diamond(x.centre(breach.interval) + offset, height),
                                   "fill": BREACH_COLOUR, "stroke": "#4d0000", "stroke-width": 1},
                          _tag("title", None, breach.note)))
    return marks


def heatmap(*, chart_id: str, title: str, axis: list[Interval], rows: list[str], cells: list[Cell]) -> Markup:
    """Rows (features) by intervals; a cell per row and interval tested, coloured by its `DRIFT_LEVELS` level."""
    row_height, top = 22.0, 34.0
    bottom = top + row_height * len(rows)
    height = bottom + 74
    x = _XScale(axis, HEATMAP_LEFT)
    row_top = {row: top + position * row_height for position, row in enumerate(rows)}
    body: list[Markup] = [_text(HEATMAP_LEFT - 8, row_top[row] + row_height / 2 + 4, row, text_anchor="end",
                                font_size=11) for row in rows]
    for cell in cells:
        body.append(_tag("rect", {"class": "cell", "data-feature": cell.row, "data-interval": cell.interval,
                                  "data-drifted": "true" if cell.level else "false",
                                  "x": _px(x.centre(cell.interval) - x.slot / 2 + 1), "width": _px(x.slot - 2),
                                  "y": _px(row_top[cell.row] + 1), "height": _px(row_height - 2),
                                  "fill": DRIFT_LEVELS[cell.level][1]},
                         _tag("title", None, cell.note)))
    body.extend(x.ticks(axis, bottom))
    body.append(_text((HEATMAP_LEFT + x.right) / 2, bottom + 36, "interval start (UTC)", text_anchor="middle"))
    legend = [(_tag("rect", {"x": 0, "y": -6, "width": 14, "height": 12, "fill": colour}), label)
              for label, colour in DRIFT_LEVELS]
    legend.append((_tag("rect", {"x": 0, "y": -6, "width": 14, "height": 12, "fill": "#ffffff",
                                 "stroke": GRID_COLOUR}), "not tested"))
    body.append(_legend(legend, height - 16))
    drifted = sum(1 for cell in cells if cell.level)
    summary = f"{len(rows)} features over {len(axis)} intervals; {drifted} of {len(cells)} tests flagged drift"
    return _svg("heatmap", chart_id, title, summary, height, body)


def decision_strip(*, chart_id: str, title: str, axis: list[Interval], marks: list[Mark]) -> Markup:
    """One coloured square per decided interval, in the colour of its decision."""
    height, top, size = 120.0, 34.0, 24.0
    x = _XScale(axis, PLOT_LEFT)
    body: list[Markup] = []
    for mark in marks:
        side = min(size, x.slot - 2)
        body.append(_tag("rect", {"class": "decision", "data-interval": mark.interval, "data-decision": mark.decision,
                                  "x": _px(x.centre(mark.interval) - side / 2), "y": _px(top), "width": _px(side),
                                  "height": _px(size), "rx": 3,
                                  "fill": DECISION_COLOURS.get(mark.decision, GRID_COLOUR)},
                         _tag("title", None, mark.note)))
    body.extend(x.ticks(axis, top + size))
    used = {mark.decision for mark in marks}
    legend = [(_tag("rect", {"x": 0, "y": -6, "width": 14, "height": 12, "rx": 2, "fill": colour}), decision)
              for decision, colour in DECISION_COLOURS.items() if decision in used]
    body.append(_legend(legend, height - 16))
    summary = f"{len(marks)} decisions over {len(axis)} intervals"
    return _svg("decision-strip", chart_id, title, summary, height, body)
