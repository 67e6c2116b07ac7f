"""Time in contracts (availability rules §2): instants as integer microseconds since the epoch
(exact interval arithmetic), periods in site-local time, contract years between anniversaries.

A period is `[start, end)`. Months `2026-10`, quarters `2026-Q2`, contract years `CY3`; a range
joins two labels of one kind with `..`."""

from __future__ import annotations

import bisect
import datetime as dt
import re
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

US_PER_HOUR = 3_600_000_000
PeriodKind = Literal["month", "quarter", "contract_year"]

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-Q([1-4])$")
_CONTRACT_YEAR = re.compile(r"^CY(\d{1,3})$")


class PeriodError(ValueError):
    """A period label that cannot be used (malformed, wrong kind, outside the term)."""


def to_us(moment: dt.datetime) -> int:
    """An aware datetime as integer microseconds since the epoch (exact)."""
    if moment.tzinfo is None:
        raise ValueError("a moment needs a UTC offset")
    delta = moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_us(us: int, tz: ZoneInfo) -> dt.datetime:
    return (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=us)).astimezone(tz)


def local_midnight_us(day: dt.date, tz: ZoneInfo) -> int:
    return to_us(dt.datetime.combine(day, dt.time(), tzinfo=tz))


class LocalDays:
    """The site-local day containing an instant (23, 24 or 25 hours long), for a sweep that
    asks again and again about the same few days: the midnights found so far are kept in
    order, one after the other, and an instant among them is placed by bisection — the
    calendar is asked only for days not seen yet."""

    # Farther than this from the days kept, a day is looked up alone: the kept days start
    # again from it rather than fill the gap.
    _FILL_DAYS = 400

    def __init__(self, tz: ZoneInfo) -> None:
        self.tz = tz
        self._midnights: list[int] = []  # consecutive: each day is [m[i], m[i + 1])

    def bounds(self, us: int) -> tuple[int, int]:
        """`(start, end)` of the site-local day containing the instant."""
        midnights = self._midnights
        if not (midnights and midnights[0] <= us < midnights[-1]):
            self._extend(us)
        i = bisect.bisect_right(midnights, us)
        return midnights[i - 1], midnights[i]

    def _extend(self, us: int) -> None:
        tz, midnights = self.tz, self._midnights
        today = from_us(us, tz).date()
        if midnights:
            first = from_us(midnights[0], tz).date()
            last = from_us(midnights[-1], tz).date()
            if (today - last).days <= self._FILL_DAYS and (first - today).days <= self._FILL_DAYS:
                # Fill up to the new day, so the kept midnights stay consecutive.
                days = (today - last).days + 1
                midnights.extend(local_midnight_us(last + dt.timedelta(days=d), tz)
                                 for d in range(1, days + 1))
                days = (first - today).days
                midnights[:0] = [local_midnight_us(today + dt.timedelta(days=d), tz)
                                 for d in range(days)]
                return
        midnights[:] = [local_midnight_us(today, tz),
                        local_midnight_us(today + dt.timedelta(days=1), tz)]


def anniversary(start: dt.date, years: int) -> dt.date:
    """`start` plus whole years; a 29 February start has its anniversaries on 28 February."""
    if start.month == 2 and start.day == 29 and years:
        return dt.date(start.year + years, 2, 28)
    return start.replace(year=start.year + years)


@dataclass(frozen=True, slots=True)
class Period:
    label: str
    kind: PeriodKind
    start_us: int
    end_us: int


class ContractCalendar:
    """Contract years and measurement periods of one contract, in its site's time zone."""

    def __init__(self, start: dt.date, term_years: int, tz: ZoneInfo) -> None:
        self.start = start
        self.term_years = term_years
        self.tz = tz
        # boundaries[n] = start of contract year n + 1; boundaries[term] = contract end
        self.boundaries = [local_midnight_us(anniversary(start, n), tz)
                           for n in range(term_years + 1)]

    @property
    def start_us(self) -> int:
        return self.boundaries[0]

    @property
    def end_us(self) -> int:
        return self.boundaries[-1]

    def contract_year(self, us: int) -> int | None:
        """The contract year (1-based) containing the instant; None outside the term."""
        if not self.start_us <= us < self.end_us:
            return None
        return bisect.bisect_right(self.boundaries, us)

    def year_bounds(self, year: int) -> tuple[int, int]:
        return self.boundaries[year - 1], self.boundaries[year]

    def period_year(self, period: Period) -> int:
        """The contract year a period belongs to: the one containing its start, or — for a
        first period that starts before the contract — year 1."""
        year = self.contract_year(max(period.start_us, self.start_us))
        if year is None:
            raise PeriodError(f"period {period.label} lies outside the contract term "
                              f"({self._term_text()})")
        return year

    def _term_text(self) -> str:
        end = anniversary(self.start, self.term_years)
        return f"{self.start.isoformat()} to {end.isoformat()}"

    # -- labels --------------------------------------------------------------------------

    def parse(self, label: str, kind: PeriodKind) -> Period:
        period = self._parse_one(label.strip())
        if period.kind != kind:
            raise PeriodError(f"period {label!r} is a {period.kind.replace('_', ' ')}, but the "
                              f"contract measures by {kind.replace('_', ' ')}")
        if period.end_us <= self.start_us or period.start_us >= self.end_us:
            raise PeriodError(f"period {label} lies outside the contract term "
                              f"({self._term_text()})")
        return period

    def parse_range(self, text: str, kind: PeriodKind) -> list[Period]:
        """`2026-10` or `2026-01..2026-12` → the periods in time order."""
        first_label, sep, last_label = text.partition("..")
        first = self.parse(first_label, kind)
        if not sep:
            return [first]
        last = self.parse(last_label, kind)
        if last.start_us < first.start_us:
            raise PeriodError(f"range {text!r} ends before it starts")
        periods = [first]
        while periods[-1].start_us < last.start_us:
            periods.append(self.following(periods[-1]))
        return periods

    def following(self, period: Period) -> Period:
        """The next period of the same kind."""
        if period.kind == "contract_year":
            return self._contract_year(int(period.label[2:]) + 1)
        local = from_us(period.start_us, self.tz).date()
        months = 1 if period.kind == "month" else 3
        y, m = divmod(local.month - 1 + months, 12)
        return self._calendar(local.year + y, m + 1, period.kind)

    def preceding_in_year(self, period: Period) -> list[Period]:
        """The periods of the same kind before `period` that belong to its contract year, in
        order (what LD caps need to know, availability rules §5)."""
        year = self.period_year(period)
        if period.kind == "contract_year":
            return []
        year_start, _ = self.year_bounds(year)
        first = self.containing(year_start, period.kind)
        if self.contract_year(max(first.start_us, self.start_us)) != year:
            first = self.following(first)
        out: list[Period] = []
        current = first
        while current.start_us < period.start_us:
            out.append(current)
            current = self.following(current)
        return out

    def containing(self, us: int, kind: PeriodKind) -> Period:
        """The period of `kind` containing the instant."""
        if kind == "contract_year":
            year = self.contract_year(us)
            if year is None:
                raise PeriodError("instant outside the contract term")
            return self._contract_year(year)
        local = from_us(us, self.tz).date()
        month = local.month if kind == "month" else 3 * ((local.month - 1) // 3) + 1
        return self._calendar(local.year, month, kind)

    def _parse_one(self, label: str) -> Period:
        if m := _MONTH.match(label):
            year, month = int(m[1]), int(m[2])
            if not 1 <= month <= 12:
                raise PeriodError(f"period {label!r}: month must be 01..12")
            self._check_year(label, year)
            return self._calendar(year, month, "month")
        if m := _QUARTER.match(label):
            self._check_year(label, int(m[1]))
            return self._calendar(int(m[1]), 3 * (int(m[2]) - 1) + 1, "quarter")
        if m := _CONTRACT_YEAR.match(label):
            year = int(m[1])
            if not 1 <= year <= self.term_years:
                raise PeriodError(f"period {label}: the contract has years CY1..CY"
                                  f"{self.term_years}")
            return self._contract_year(year)
        raise PeriodError(f"period {label!r} is not a month (2026-10), a quarter (2026-Q2) or "
                          "a contract year (CY3)")

    def _check_year(self, label: str, year: int) -> None:
        """A calendar year the term does not touch is refused before any date is built:
        `9999-12` ends in year 10000, which no date can hold."""
        if not self.start.year <= year <= anniversary(self.start, self.term_years).year:
            raise PeriodError(f"period {label} lies outside the contract term "
                              f"({self._term_text()})")

    def _calendar(self, year: int, month: int, kind: PeriodKind) -> Period:
        span = 1 if kind == "month" else 3
        y, m = divmod(month - 1 + span, 12)
        label = f"{year:04d}-{month:02d}" if kind == "month" else f"{year:04d}-Q{(month + 2) // 3}"
        if not dt.MINYEAR <= year <= dt.MAXYEAR - y:  # 0000-01, 9999-12: no dates hold them
            raise PeriodError(f"period {label}: year out of range")
        start = local_midnight_us(dt.date(year, month, 1), self.tz)
        end = local_midnight_us(dt.date(year + y, m + 1, 1), self.tz)
        return Period(label, kind, start, end)

    def _contract_year(self, year: int) -> Period:
        if not 1 <= year <= self.term_years:
            raise PeriodError(f"contract year {year} is outside the term")
        start, end = self.year_bounds(year)
        return Period(f"CY{year}", "contract_year", start, end)
