"""What the defect watch records: the three verdicts, one `Verdict` per judged part and one
`Crossing` per counted part (both plain named tuples, safe to hand to readers)."""
from __future__ import annotations

from typing import NamedTuple

__all__ = ["PASS", "DEFECT", "UNKNOWN", "Verdict", "Crossing"]

PASS, DEFECT, UNKNOWN = "PASS", "DEFECT", "UNKNOWN"


class Verdict(NamedTuple):
    """One judged part. The first four fields are (track_id, serial, verdict, frame_seq)."""

    track_id: int
    serial: str | None
    verdict: str
    frame_seq: int
    part: int
    diff_area: int
    dhash: int
    shape: int
    box: tuple[float, float, float, float]


class Crossing(NamedTuple):
    """A counted part at the moment it crossed the line (before any judgement)."""

    part: int
    track_id: int
    frame_seq: int
    box: tuple[float, float, float, float]
