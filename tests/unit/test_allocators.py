"""Bitmap, port and IP allocators: exact messages, band preference, never a value twice."""

from __future__ import annotations

import ipaddress
import random

import pytest

from pocketkube.net.bitmap import Bitmap
from pocketkube.net.errors import AlreadyAllocated, NotInRange, RangeFull
from pocketkube.net.ipalloc import IPAllocator, ip_range_offset
from pocketkube.registry.allocators.portalloc import PortAllocator, port_range_offset
from pocketkube.registry.allocators.transaction import Transaction


def test_offsets_match_kubernetes():
    assert port_range_offset(2768) == 86  # default range: static band 30000-30085
    assert port_range_offset(16) == 0
    assert port_range_offset(100) == 16
    assert port_range_offset(100000) == 128
    assert ip_range_offset(256) == 16  # /24
    assert ip_range_offset(1 << 20) == 256  # /12
    assert ip_range_offset(16) == 0


def test_bitmap_prefers_upper_band_then_fills_lower():
    bits = Bitmap(40, offset=16, rng=random.Random(1))
    first = [bits.allocate_next() for _ in range(24)]
    assert sorted(first) == list(range(16, 40))
    rest = [bits.allocate_next() for _ in range(16)]
    assert sorted(rest) == list(range(16))
    assert bits.allocate_next() is None
    bits.release(3)
    assert bits.allocate_next() == 3


def test_bitmap_allocate_specific():
    bits = Bitmap(4)
    assert bits.allocate(2) is True
    assert bits.allocate(2) is False
    assert bits.has(2) and bits.used() == 1 and bits.free() == 3


def test_port_allocator_messages():
    ports = PortAllocator(30000, 32767)
    ports.allocate(30008)
    with pytest.raises(AlreadyAllocated, match="^provided port is already allocated$"):
        ports.allocate(30008)
    with pytest.raises(NotInRange) as err:
        ports.allocate(80)
    assert str(err.value) == ("provided port is not in the valid range. The range of valid ports is 30000-32767")


def test_port_allocator_dynamic_values_avoid_static_band():
    ports = PortAllocator(30000, 32767, rng=random.Random(7))
    values = [ports.allocate_next() for _ in range(200)]
    assert len(set(values)) == 200
    assert all(30086 <= v <= 32767 for v in values)


def test_port_allocator_fill_release_reuse():
    ports = PortAllocator(30000, 30009)
    got = {ports.allocate_next() for _ in range(10)}
    assert got == set(range(30000, 30010))
    with pytest.raises(RangeFull, match="^range is full$"):
        ports.allocate_next()
    ports.release(30004)
    assert ports.free() == 1
    assert ports.allocate_next() == 30004


def test_ip_allocator_range_and_messages():
    ips = IPAllocator("10.0.0.0/24")
    assert ips.first_ip() == "10.0.0.1"
    assert ips.size == 254  # no network, no broadcast
    with pytest.raises(NotInRange) as err:
        ips.allocate(ipaddress.ip_address("1.1.1.1"))
    assert str(err.value) == ("the provided IP (1.1.1.1) is not in the valid range. "
                              "The range of valid IPs is 10.0.0.0/24")
    with pytest.raises(NotInRange):
        ips.allocate(ipaddress.ip_address("10.0.0.255"))
    ips.allocate(ipaddress.ip_address("10.0.0.10"))
    with pytest.raises(AlreadyAllocated, match="^provided IP is already allocated$"):
        ips.allocate(ipaddress.ip_address("10.0.0.10"))


def test_ip_allocator_dynamic_band_and_exhaustion():
    ips = IPAllocator("10.0.0.0/24", rng=random.Random(3))
    first = [ips.allocate_next() for _ in range(254 - 16)]
    assert all(int(ip) - int(ipaddress.ip_address("10.0.0.0")) > 16 for ip in first)
    rest = [ips.allocate_next() for _ in range(16)]
    assert {str(ip) for ip in rest} == {f"10.0.0.{i}" for i in range(1, 17)}
    with pytest.raises(RangeFull):
        ips.allocate_next()


def test_ipv6_range_is_capped():
    assert IPAllocator("fd00::/64").size == 65536


def test_transaction_revert_and_commit_run_once_in_order():
    log: list[str] = []
    txn = Transaction()
    txn.on_revert(lambda: log.append("undo a"))
    txn.on_revert(lambda: log.append("undo b"))
    txn.on_commit(lambda: log.append("release"))
    txn.revert()
    txn.revert()
    txn.commit()
    assert log == ["undo b", "undo a"]
    txn2 = Transaction()
    txn2.on_commit(lambda: log.append("release"))
    txn2.commit()
    txn2.revert()
    assert log[-1] == "release" and log.count("release") == 1
