"""Non-recursive nftables deletes over netlink (net.nftnl) and the portmap table check
(net.portmap.idle_base_chains); the kernel side is tests/integration/test_portmap_chains.py."""

import errno
import socket
import struct

import pytest

from pocketkube.net.nftnl import NLM_F_NONREC, acks, outcome, render_delete_empty_table
from pocketkube.net.portmap import idle_base_chains


def messages(batch: bytes) -> list[tuple[int, int, int, int, bytes]]:
    """(type, flags, seq, family, attributes) of each netlink message in a batch."""
    out, offset = [], 0
    while offset < len(batch):
        length, mtype, flags, seq, _pid = struct.unpack_from("=IHHII", batch, offset)
        family = batch[offset + 16]
        out.append((mtype, flags, seq, family, batch[offset + 20:offset + length]))
        offset += (length + 3) & ~3
    return out


def test_a_batch_deletes_the_chains_then_the_table_each_non_recursively():
    got = messages(render_delete_empty_table("ip", "nat", ["PREROUTING", "OUTPUT"]))
    assert [(m[0], m[2]) for m in got] == [(0x10, 1), (0x0a05, 2), (0x0a05, 3), (0x0a02, 4), (0x11, 5)]
    for mtype, flags, _seq, family, _attrs in got[1:-1]:
        assert flags & NLM_F_NONREC and family == socket.AF_INET
    assert b"nat\0" in got[1][4] and b"PREROUTING\0" in got[1][4] and b"OUTPUT\0" in got[2][4]
    assert messages(render_delete_empty_table("ip6", "nat"))[1][3] == socket.AF_INET6


@pytest.mark.parametrize("family,name", [("ipx", "nat"), ("ip", ""), ("ip", "a\0b")])
def test_bad_names_are_refused(family, name):
    with pytest.raises(ValueError):
        render_delete_empty_table(family, name)


def error(seq: int, err: int) -> bytes:
    return struct.pack("=IHHII", 36, 2, 0, seq, 0) + struct.pack("=i", -err) + b"\0" * 16


def test_the_first_failure_decides_and_then_nothing_was_applied():
    assert acks(error(2, 0) + error(3, errno.EBUSY)) == {2: 0, 3: errno.EBUSY}
    assert outcome({2: 0, 3: 0}) == "deleted"
    assert outcome({2: 0, 3: errno.EBUSY, 4: errno.EBUSY}) == "not empty"
    assert outcome({2: errno.ENOENT}) == "absent"
    assert outcome({2: errno.EPERM}) == "error: EPERM"


def test_only_a_table_of_empty_base_chains_is_idle():
    def listing(*objects):
        return {"nftables": [{"metainfo": {}}, {"table": {"family": "ip", "name": "nat"}}, *objects]}

    base = {"chain": {"family": "ip", "table": "nat", "name": "OUTPUT", "type": "nat", "hook": "output", "prio": -100}}
    assert idle_base_chains(listing(base)) == ["OUTPUT"]
    assert idle_base_chains(listing()) == []
    assert idle_base_chains(listing(base, {"rule": {"chain": "OUTPUT"}})) is None
    assert idle_base_chains(listing(base, {"chain": {"name": "DOCKER"}})) is None
    assert idle_base_chains(listing(base, {"set": {"name": "s"}})) is None
