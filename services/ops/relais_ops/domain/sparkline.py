"""Sparklines: a small line chart of one series, drawn on the server as inline SVG (no
script), with its figures kept for the text alternative and the table next to it.

The horizontal axis spans the whole window asked (not just the points found), so that
a stretch without figures shows as a gap where it happened; the vertical axis starts
at zero (a rate, a lag, a count: never negative), so that a flat line at the bottom
means "nothing" and not "the least of the window". Pure: no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

Point = tuple[float, float]  # (Unix time, value)


@dataclass(frozen=True)
class Sparkline:
    width: int
    height: int
    line: str  # the SVG path of the line (`M x y L x y ...`, `M` again after a gap)
    area: str  # the same, closed down to the axis (filled under the line)
    points: tuple[Point, ...]
    start: float
    end: float

    @property
    def empty(self) -> bool:
        return not self.points

    @property
    def last(self) -> float | None:
        return self.points[-1][1] if self.points else None

    @property
    def high(self) -> float | None:
        return max(v for _, v in self.points) if self.points else None

    @property
    def low(self) -> float | None:
        return min(v for _, v in self.points) if self.points else None


def _fmt(number: float) -> str:
    text = f"{number:.1f}"
    return text[:-2] if text.endswith(".0") else text


def sparkline(points: Sequence[Point], *, start: float, end: float, step_s: float, width: int = 240,
              height: int = 48, pad: int = 2) -> Sparkline:
    """The sparkline of `points` over [start, end]; a gap wherever two points are more
    than one and a half steps apart."""
    kept = tuple(sorted((t, v) for t, v in points if start <= t <= end))
    span = max(end - start, 1e-9)
    top = max((v for _, v in kept), default=0.0)
    scale = top if top > 0 else 1.0
    inner_w, inner_h = width - 2 * pad, height - 2 * pad
    baseline = pad + inner_h

    def xy(t: float, v: float) -> tuple[float, float]:
        return pad + (t - start) / span * inner_w, baseline - max(v, 0.0) / scale * inner_h

    runs: list[list[Point]] = []
    previous: float | None = None
    for t, v in kept:
        if previous is None or t - previous > 1.5 * step_s:
            runs.append([])
        runs[-1].append((t, v))
        previous = t
    line_parts, area_parts = [], []
    for run in runs:
        coords = [xy(t, v) for t, v in run]
        if len(coords) == 1:  # a lone point: a short dash, so that it shows
            x, y = coords[0]
            coords = [(max(pad, x - 1.5), y), (min(width - pad, x + 1.5), y)]
        line_parts.append("M" + " L".join(f"{_fmt(x)} {_fmt(y)}" for x, y in coords))
        area_parts.append(f"M{_fmt(coords[0][0])} {_fmt(baseline)} L"
                          + " L".join(f"{_fmt(x)} {_fmt(y)}" for x, y in coords)
                          + f" L{_fmt(coords[-1][0])} {_fmt(baseline)} Z")
    return Sparkline(width, height, " ".join(line_parts), " ".join(area_parts), kept, start, end)
