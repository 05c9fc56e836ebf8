"""api.timestamps: the one formatter and parser of Kubernetes times."""

from __future__ import annotations

import pytest

from pocketkube.api.timestamps import format_rfc3339_nano, now_micro, now_rfc3339, parse_rfc3339

T = 1_700_000_000.25


def test_time_has_second_precision_and_micro_time_microseconds():
    assert now_rfc3339(T) == "2023-11-14T22:13:20Z"
    assert now_micro(T) == "2023-11-14T22:13:20.250000Z"
    assert now_rfc3339().endswith("Z") and len(now_rfc3339()) == 20


@pytest.mark.parametrize("text, epoch", [
    ("2023-11-14T22:13:20Z", 1_700_000_000.0),
    ("2023-11-14T22:13:20.250000Z", T),
    ("2023-11-14T22:13:20.25+00:00", T),
    ("2023-11-14T23:13:20+01:00", 1_700_000_000.0),
    ("2023-11-14T22:13:20", 1_700_000_000.0),  # no offset: UTC
])
def test_parse_accepts_every_precision_and_offset(text, epoch):
    assert parse_rfc3339(text) == pytest.approx(epoch)


@pytest.mark.parametrize("bad", [None, "", "garbage", 42])
def test_parse_returns_the_default_for_bad_input(bad):
    assert parse_rfc3339(bad) is None
    assert parse_rfc3339(bad, default=0.0) == 0.0


def test_nano_drops_trailing_zeros_as_go_does():
    assert format_rfc3339_nano(1_700_000_000_000_000_000) == "2023-11-14T22:13:20Z"
    assert format_rfc3339_nano(1_700_000_000_120_000_000) == "2023-11-14T22:13:20.12Z"
