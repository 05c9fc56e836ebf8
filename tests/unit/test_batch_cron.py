"""Cron schedule parsing and next-activation times (robfig/cron ParseStandard semantics)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pocketkube.api import cron


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(("spec", "after", "expected"), [
    ("*/5 * * * *", at(2026, 1, 1, 0, 3), at(2026, 1, 1, 0, 5)),
    ("*/5 * * * *", at(2026, 1, 1, 0, 5), at(2026, 1, 1, 0, 10)),
    ("0 * * * *", at(2026, 1, 1, 0, 0, 30), at(2026, 1, 1, 1, 0)),
    ("@hourly", at(2026, 1, 1, 23, 59), at(2026, 1, 2, 0, 0)),
    ("@daily", at(2026, 12, 31, 12, 0), at(2027, 1, 1, 0, 0)),
    ("@weekly", at(2026, 12, 5, 0, 0), at(2026, 12, 6, 0, 0)),  # 6 Dec 2026 is a Sunday
    ("@monthly", at(2026, 1, 31, 0, 0), at(2026, 2, 1, 0, 0)),
    ("@yearly", at(2026, 6, 1), at(2027, 1, 1)),
    ("30 2 * * mon-fri", at(2026, 12, 5, 0, 0), at(2026, 12, 7, 2, 30)),
    ("0 0 13 * fri", at(2026, 1, 1), at(2026, 1, 2)),  # both restricted: either matches
    ("0 0 29 feb *", at(2026, 1, 1), at(2028, 2, 29)),
    ("5/20 * * * *", at(2026, 1, 1, 0, 6), at(2026, 1, 1, 0, 25)),
    ("0 9 * JAN,jul ?", at(2026, 2, 1), at(2026, 7, 1, 9, 0)),
])
def test_next(spec, after, expected):
    assert cron.parse(spec).next(after) == expected


def test_time_zone_prefix_and_zone():
    s = cron.parse("TZ=Europe/Paris 0 9 * * *")
    assert s.next(at(2026, 12, 5, 0, 0)) == datetime(2026, 12, 5, 8, 0, tzinfo=UTC)
    paris = cron.load_zone("Europe/Paris")
    assert cron.parse("0 9 * * *").next(at(2026, 12, 5, 0, 0).astimezone(paris)) == at(2026, 12, 5, 8, 0)


def test_every():
    assert cron.parse("@every 1h30m").next(at(2026, 1, 1, 0, 0, 10)) > at(2026, 1, 1, 0, 0, 10)


def test_impossible_date_has_no_next():
    assert cron.parse("0 0 30 feb *").next(at(2026, 1, 1)) is None


@pytest.mark.parametrize(("spec", "message"), [
    ("foo", "expected exactly 5 fields, found 1: [foo]"),
    ("* * * *", "expected exactly 5 fields, found 4: [* * * *]"),
    ("60 * * * *", "end of range (60) above maximum (59): 60"),
    ("* * 0 * *", "beginning of range (0) below minimum (1): 0"),
    ("5-1 * * * *", "beginning of range (5) beyond end of range (1): 5-1"),
    ("x * * * *", 'failed to parse int from x: strconv.Atoi: parsing "x": invalid syntax'),
    ("@fortnightly", "unrecognized descriptor: @fortnightly"),
    ("*/0 * * * *", "step of range should be a positive number: */0"),
])
def test_errors(spec, message):
    with pytest.raises(cron.CronError) as e:
        cron.parse(spec)
    assert str(e.value) == message


def test_unknown_zone():
    with pytest.raises(cron.CronError, match="unknown time zone Mars/Base"):
        cron.load_zone("Mars/Base")
