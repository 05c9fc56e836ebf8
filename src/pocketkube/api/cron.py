"""CronJob schedules: the standard 5-field cron syntax and descriptors, as the robfig/cron v3
parser Kubernetes uses (ParseStandard): `minute hour day-of-month month day-of-week`, lists,
ranges, steps, month and weekday names, `?`, `@hourly`/`@daily`/... and `@every <duration>`,
and an optional `TZ=`/`CRON_TZ=` prefix (which the API only keeps on old objects).

Errors are worded as robfig words them, since the API server shows them in `spec.schedule`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["CronError", "Schedule", "load_zone", "parse"]


class CronError(ValueError):
    pass


_MONTHS = {m: i for i, m in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (min, max, names) per field, in schedule order.
_BOUNDS = ((0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS))
_DESCRIPTORS = {"@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
                "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
                "@hourly": "0 * * * *"}
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def load_zone(name: str) -> tzinfo:
    """An IANA zone; CronError("unknown time zone X") as Go's time.LoadLocation."""
    if name in ("", "UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as e:
        raise CronError(f"unknown time zone {name}") from e


@dataclass(frozen=True)
class Schedule:
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    doms: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    dows: frozenset[int] = frozenset()
    dom_star: bool = True
    dow_star: bool = True
    every: float = 0.0  # @every: a fixed interval in seconds instead of the fields
    zone: tzinfo | None = None  # from a TZ= prefix; None: the caller's zone

    def _day_matches(self, d: datetime) -> bool:
        dom, dow = d.day in self.doms, (d.isoweekday() % 7) in self.dows
        if self.dom_star or self.dow_star:
            return dom and dow
        return dom or dow  # both restricted: either matches, as cron does

    def next(self, after: datetime) -> datetime | None:
        """The first activation strictly after `after` (aware), in `after`'s zone unless the
        schedule names its own; None if there is none within five years (e.g. Feb 30)."""
        if self.every:  # robfig's ConstantDelaySchedule: whole seconds after `after`, at least one
            return after.replace(microsecond=0) + timedelta(seconds=max(1, int(self.every)))
        zone = self.zone or after.tzinfo
        t = after.astimezone(zone).replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t.year + 5
        while t.year <= limit:
            if t.month not in self.months:
                t = _first_of_next_month(t)
                continue
            if not self._day_matches(t):
                t = (t + timedelta(days=1)).replace(hour=0, minute=0)
                continue
            if t.hour not in self.hours:
                t = _next_hour(t)
                continue
            if t.minute not in self.minutes:
                t = _add_minute(t)
                continue
            return t
        return None


def _first_of_next_month(t: datetime) -> datetime:
    year, month = (t.year + 1, 1) if t.month == 12 else (t.year, t.month + 1)
    return t.replace(year=year, month=month, day=1, hour=0, minute=0)


def _next_hour(t: datetime) -> datetime:
    # Wall-clock arithmetic in the zone (DST gaps are skipped, as robfig does by normalizing).
    return (t.replace(minute=0) + timedelta(hours=1))


def _add_minute(t: datetime) -> datetime:
    return t + timedelta(minutes=1)


def parse(spec: str) -> Schedule:
    """Parse a schedule; CronError with robfig's wording on bad input."""
    zone = None
    spec = spec.strip()
    if spec.startswith(("TZ=", "CRON_TZ=")):
        head, _, spec = spec.partition(" ")
        zone = load_zone(head.split("=", 1)[1])
        spec = spec.strip()
    if spec.startswith("@"):
        if spec.startswith("@every "):
            return Schedule(every=_duration(spec[len("@every "):].strip()), zone=zone)
        if spec not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {spec}")
        spec = _DESCRIPTORS[spec]
    fields = spec.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    parsed = [_field(f, *b) for f, b in zip(fields, _BOUNDS)]
    return Schedule(parsed[0][0], parsed[1][0], parsed[2][0], parsed[3][0], parsed[4][0],
                    dom_star=parsed[2][1], dow_star=parsed[4][1], zone=zone)


def _field(expr: str, low: int, high: int, names: dict[str, int]) -> tuple[frozenset[int], bool]:
    values: set[int] = set()
    star = False
    for part in expr.split(","):
        got, is_star = _range(part, low, high, names)
        values |= got
        star = star or is_star
    return frozenset(values), star


def _range(expr: str, low: int, high: int, names: dict[str, int]) -> tuple[set[int], bool]:
    range_and_step = expr.split("/")
    low_and_high = range_and_step[0].split("-")
    single = len(low_and_high) == 1
    star = False
    if low_and_high[0] in ("*", "?"):
        start, end, star = low, high, True
    else:
        start = _value(low_and_high[0], names)
        if len(low_and_high) == 1:
            end = start
        elif len(low_and_high) == 2:
            end = _value(low_and_high[1], names)
        else:
            raise CronError(f"too many hyphens: {expr}")
    if len(range_and_step) == 1:
        step = 1
    elif len(range_and_step) == 2:
        step = _positive(range_and_step[1])
        star = False
        if single and low_and_high[0] not in ("*", "?"):
            end = high  # "N/step" means N-max/step
    else:
        raise CronError(f"too many slashes: {expr}")
    if start < low:
        raise CronError(f"beginning of range ({start}) below minimum ({low}): {expr}")
    if end > high:
        raise CronError(f"end of range ({end}) above maximum ({high}): {expr}")
    if start > end:
        raise CronError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")
    if step == 0:
        raise CronError(f"step of range should be a positive number: {expr}")
    return set(range(start, end + 1, step)), star


def _value(expr: str, names: dict[str, int]) -> int:
    if expr.lower() in names:
        return names[expr.lower()]
    return _positive(expr)


def _positive(expr: str) -> int:
    if not re.fullmatch(r"[+-]?[0-9]+", expr):
        raise CronError(f'failed to parse int from {expr}: strconv.Atoi: parsing "{expr}": invalid syntax')
    n = int(expr)
    if n < 0:
        raise CronError(f"negative number ({n}) not allowed: {expr}")
    return n


def _duration(expr: str) -> float:
    """Go's time.ParseDuration for the units cron accepts (e.g. 1h30m, 90s)."""
    parts = re.findall(r"([0-9]*\.?[0-9]+)(ns|us|µs|ms|s|m|h)", expr)
    if not parts or "".join(n + u for n, u in parts) != expr:
        raise CronError(f"failed to parse duration @every {expr}: time: invalid duration \"{expr}\"")
    return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
