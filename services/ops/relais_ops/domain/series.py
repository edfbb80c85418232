"""Figures as a time-series database gives them: an instant vector's samples, a range
query's series. Labels are metric labels (services, topics, operators: never a person)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Sample:
    """One series of an instant vector: its labels and its value."""

    labels: Mapping[str, str]
    value: float


@dataclass(frozen=True)
class Series:
    """One series of a range query: its labels and its points (Unix time, value)."""

    labels: Mapping[str, str]
    points: tuple[tuple[float, float], ...] = field(default=())
