"""Soak runs in their CI form (bench/soak.py runs the long forms by hand).

Connections: 2,000 at once through a NodePort on the userspace plane, several rounds; the agent's
descriptors must come back exactly, and its RSS must level off (no growth per connection).
Churn: 5 pods/s created and deleted for 20 s with Lease heartbeats, compaction every second and
a short event TTL: the database and the server's RSS level off, Events do not pile up.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import soak
from pocketkube.testing.requires import ROOT, is_root, requires

CONNECTIONS = int(os.environ.get("POCKETKUBE_SOAK_CONNECTIONS", "2000"))
CHURN_SECONDS = float(os.environ.get("POCKETKUBE_SOAK_SECONDS", "20"))


def test_connections_release_every_descriptor_and_memory_levels_off():
    result = soak.run_connections(min(CONNECTIONS, soak.connection_capacity()), rounds=8)
    print(f"\nconnections: {result}")
    assert result.peak.fds >= result.baseline.fds + 2 * result.connections * 0.95, "the connections were not held"
    assert result.fd_drift() <= 0.05, result
    assert result.rss_growth_last(3) <= 0.05, f"RSS still grows round after round: {result.rounds}"


def test_pod_churn_keeps_the_store_and_server_memory_bounded():
    result = soak.run_churn(CHURN_SECONDS, rate=5, event_ttl=3, compact_keep=100)
    print(f"\nchurn: {result.writes} writes, db {result.db_bytes[0]} -> {result.db_bytes[-1]} bytes, "
          f"rss {result.rss[0]} -> {result.rss[-1]}, events left {result.events_left}")
    assert result.pods_created >= CHURN_SECONDS * 5 * 0.9
    assert soak.ChurnSoak.growth(result.db_bytes) <= 0.10, result.db_bytes
    assert soak.ChurnSoak.growth(result.rss) <= 0.10, result.rss
    assert result.events_left <= 5 * 10, "Events did not expire"


# Root: the soaks bind cluster addresses and raise limits.
pytestmark = [requires(is_root(), ROOT), pytest.mark.slow, pytest.mark.timeout(600)]
