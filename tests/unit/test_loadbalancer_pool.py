"""The LoadBalancer controller's pool: IPAllocator with the pool's span, lowest address first."""

from __future__ import annotations

import ipaddress

import pytest

from pocketkube.controllers.loadbalancer import IPPool, pool_span
from pocketkube.net.bitmap import Bitmap
from pocketkube.net.ipalloc import IPAllocator


def test_pool_hands_out_lowest_first_without_network_gateway_broadcast():
    pool = IPPool("127.201.0.0/29")
    got = [pool.allocate(f"ns/lb{i}") for i in range(6)]
    assert got == [f"127.201.0.{n}" for n in range(2, 7)] + [None]
    assert pool.allocate("ns/lb0") == "127.201.0.2"  # a key keeps its IP
    assert pool.release("ns/lb2") == "127.201.0.4"
    assert pool.allocate("ns/lb5") == "127.201.0.4"  # the lowest released one comes back first


def test_pool_assign_requested_ip():
    pool = IPPool("127.200.0.0/24")
    assert pool.assign("ns/a", "127.200.0.10") and pool.ip_of("ns/a") == "127.200.0.10"
    assert pool.assign("ns/a", "127.200.0.10")  # its own already
    assert not pool.assign("ns/b", "127.200.0.10") and pool.holder("127.200.0.10") == "ns/a"
    for outside in ("127.200.0.0", "127.200.0.1", "127.200.0.255", "10.0.0.1", "not-an-ip"):
        assert not pool.assign("ns/b", outside), outside
    assert pool.assign("ns/a", "127.200.0.11")  # moving frees the old IP
    assert pool.holder("127.200.0.10") is None and pool.allocate("ns/b") == "127.200.0.2"
    assert pool.assign("ns/c", "127.200.0.10")


def test_tiny_pools_use_every_address():
    assert pool_span("127.200.0.0/30") == (0, 3)
    pool = IPPool("127.200.0.5/32")
    assert pool.allocate("ns/a") == "127.200.0.5" and pool.allocate("ns/b") is None


def test_bitmap_allocate_lowest():
    bits = Bitmap(3)
    assert [bits.allocate_lowest() for _ in range(4)] == [0, 1, 2, None]
    bits.release(1)
    assert bits.allocate_lowest() == 1


def test_ip_allocator_span_bounds_the_range():
    ips = IPAllocator("10.0.0.0/29", span=(2, 6), lowest_first=True)
    assert ips.size == 5 and str(ips.allocate_next()) == "10.0.0.2"
    assert not ips.has(ipaddress.ip_address("10.0.0.1"))
    with pytest.raises(ValueError):
        IPAllocator("10.0.0.0/29", span=(2, 8))
