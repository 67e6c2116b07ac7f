"""A poll's values as one flat row in the poll's shape — the form the site step's per-poll
work shares (flows/minutes.py aggregates the rows of a minute; flows/site_state.py tells a
unit's unchanged statuses by the values its status rules read).

A unit's polls usually carry the same assets and tags in the same order from one poll to
the next (its device map does not change), so comparing shapes and picking values by
position replaces a dictionary walk per asset."""

from __future__ import annotations

import operator
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

Shape = tuple[tuple[str, tuple[str, ...]], ...]  # (asset id, its tags in order) per asset


@dataclass(frozen=True, slots=True)
class Frame:
    shape: Shape
    values: list[float]  # every asset's tag values in the shape's order

    @classmethod
    def of(cls, readings: Sequence[tuple[str, dict[str, float]]]) -> Frame:
        """A poll's readings (flows/telemetry.py `Poll.readings`: each asset's id and
        canonical tag values) as a frame."""
        return cls(tuple([(asset_id, tuple(tags)) for asset_id, tags in readings]),
                   [v for _, tags in readings for v in tags.values()])


def picker(shape: Shape, tags: Collection[str]) -> Callable[[list[float]], object] | None:
    """What picks the values of `tags` (of every asset) out of a frame of `shape`, to compare
    with another frame's (None: the shape has none of them). Picklable: site state keeps it."""
    positions = [i for i, tag in enumerate(t for _, names in shape for t in names)
                 if tag in tags]
    return operator.itemgetter(*positions) if positions else None
