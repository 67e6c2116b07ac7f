"""A unit's tags downsampled per minute for the history: count, min, max, sum and last of
every (asset, tag) of its polls within the minute — pure, picklable state of the site step.

A unit's polls usually come in one shape (flows/frame.py), so the minute is kept as arrays
in that shape's order, one slot per (asset, tag), and a poll updates them with a handful of
array operations instead of a dictionary look-up and five updates per value. A poll of
another shape (a value refused, a device map changed) folds what the arrays hold into a
dictionary and starts them again in the new shape."""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from flows.frame import Frame, Shape
from flows.outputs import Aggregates, block_of

Series = tuple[tuple[str, str], ...]  # (asset, tag) of each value, in order


@lru_cache(maxsize=4096)
def series_of(shape: Shape) -> Series:
    """The (asset, tag) of each of a shape's values — one tuple per shape, so that a unit's
    minutes in one shape share it (the history groups them by it)."""
    return tuple((asset_id, tag) for asset_id, tags in shape for tag in tags)


class MinuteTags:
    """The aggregates of one unit-minute so far (`aggregates()` gives them by (asset, tag),
    in the order the tags were first seen; `block()` as arrays, for the history)."""

    __slots__ = ("_done", "_high", "_last", "_low", "_n", "_shape", "_sum")

    def __init__(self, done: Aggregates | None = None) -> None:
        """`done`: aggregates already made (a recovery snapshot's, taken before minutes were
        kept as arrays), to which this minute's polls are added."""
        self._done: Aggregates = {} if done is None else done
        self._shape: Shape | None = None
        self._n = 0
        self._low = self._high = self._sum = self._last = np.empty(0)

    def __bool__(self) -> bool:
        return self._n > 0 or bool(self._done)

    def add(self, readings: Sequence[tuple[str, dict[str, float]]]) -> None:
        self.add_frame(Frame.of(readings))

    def add_frame(self, frame: Frame) -> None:
        shape = frame.shape
        values = np.array(frame.values, dtype=np.float64)
        if shape != self._shape:
            self._fold()
            self._shape, self._n = shape, 1
            self._low, self._high, self._sum = values.copy(), values.copy(), values.copy()
        else:
            self._n += 1
            np.minimum(self._low, values, out=self._low)
            np.maximum(self._high, values, out=self._high)
            np.add(self._sum, values, out=self._sum)
        self._last = values

    def block(self) -> tuple[Series, np.ndarray]:
        """The minute so far as its series and their count, min, max, mean and last
        (`(len(series), 5)`, float64; mean = Σ / count, as `aggregates()` would give)."""
        if self._shape is not None and not self._done:
            series = series_of(self._shape)
            values = np.empty((len(series), 5))
            values[:, 0] = self._n
            values[:, 1] = self._low
            values[:, 2] = self._high
            np.divide(self._sum, float(self._n), out=values[:, 3])
            values[:, 4] = self._last
            return series, values
        return block_of(self.aggregates())

    def aggregates(self) -> Aggregates:
        """(asset, tag) → [count, min, max, sum, last] of the minute so far."""
        self._fold()
        return self._done

    def _fold(self) -> None:
        """What the arrays hold, added to the dictionary (and the arrays emptied)."""
        if self._shape is None:
            return
        n, done = float(self._n), self._done
        keys = [(asset_id, tag) for asset_id, tags in self._shape for tag in tags]
        for key, low, high, total, last in zip(keys, self._low.tolist(), self._high.tolist(),
                                               self._sum.tolist(), self._last.tolist(),
                                               strict=True):
            known = done.get(key)
            if known is None:
                done[key] = [n, low, high, total, last]
            else:
                known[0] += n
                known[1] = min(known[1], low)
                known[2] = max(known[2], high)
                known[3] += total
                known[4] = last
        self._shape, self._n = None, 0
