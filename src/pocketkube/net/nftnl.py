"""Deleting an nftables table (and its chains) only if they are empty, which `nft` cannot do.

`nft delete table|chain` (nftables 1.0.6, Debian bookworm) removes them with everything in them.
The kernel honours NLM_F_NONREC on a delete: it answers EBUSY while a chain holds a rule or a
table holds any chain, set or other object left, and a batch is one transaction that commits
only if every message in it succeeded. So one batch deleting the listed chains and then the
table, all non-recursively, removes an empty table and nothing else: a rule or chain someone
adds meanwhile makes the whole batch fail. Message building and ack parsing are pure;
`delete_table_if_empty` does the I/O.
"""

from __future__ import annotations

import errno
import socket
import struct

NETLINK_NETFILTER = 12
NLM_F_REQUEST, NLM_F_ACK, NLM_F_NONREC = 0x1, 0x4, 0x100
NLMSG_ERROR = 2
NFNL_MSG_BATCH_BEGIN, NFNL_MSG_BATCH_END = 0x10, 0x11
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_DELTABLE, NFT_MSG_DELCHAIN = 2, 5
NFTA_TABLE_NAME = 1
NFTA_CHAIN_TABLE, NFTA_CHAIN_NAME = 1, 3
FAMILIES = {"inet": 1, "ip": 2, "arp": 3, "netdev": 5, "bridge": 7, "ip6": 10}
_HEADER = struct.Struct("=IHHII")  # nlmsghdr: len, type, flags, seq, pid


def _message(mtype: int, flags: int, seq: int, family: int, res_id: int, payload: bytes = b"") -> bytes:
    body = struct.pack("=BBH", family, 0, socket.htons(res_id)) + payload  # nfgenmsg
    return _HEADER.pack(_HEADER.size + len(body), mtype, flags, seq, 0) + body


def _attribute(atype: int, data: bytes) -> bytes:
    length = 4 + len(data)
    return struct.pack("=HH", length, atype) + data + b"\0" * (-length % 4)


def _check_name(kind: str, name: str) -> bytes:
    if not name or len(name) > 255 or "\0" in name:
        raise ValueError(f"bad nftables {kind} name {name!r}")
    return name.encode() + b"\0"


def render_delete_empty_table(family: str, table: str, chains: tuple[str, ...] | list[str] = ()) -> bytes:
    """One batch deleting `chains` of table `family` `table`, then the table, each
    non-recursively and acknowledged; messages are numbered from 2 (ValueError for bad names)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown nftables family {family!r}")
    fam, flags = FAMILIES[family], NLM_F_REQUEST | NLM_F_ACK | NLM_F_NONREC
    table_name = _check_name("table", table)
    body = b""
    for seq, chain in enumerate(chains, start=2):
        body += _message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELCHAIN, flags, seq, fam, 0,
                         _attribute(NFTA_CHAIN_TABLE, table_name) + _attribute(NFTA_CHAIN_NAME, _check_name("chain", chain)))
    last = 2 + len(chains)
    body += _message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_DELTABLE, flags, last, fam, 0,
                     _attribute(NFTA_TABLE_NAME, table_name))
    return (_message(NFNL_MSG_BATCH_BEGIN, NLM_F_REQUEST, 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES) + body
            + _message(NFNL_MSG_BATCH_END, NLM_F_REQUEST, last + 1, socket.AF_UNSPEC, NFNL_SUBSYS_NFTABLES))


def acks(data: bytes) -> dict[int, int]:
    """seq -> errno (0: done) of every netlink ack or error in `data`."""
    found = {}
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, mtype, _flags, seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if mtype == NLMSG_ERROR and length >= _HEADER.size + 4:
            found[seq] = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
        offset += (length + 3) & ~3
    return found


def outcome(answers: dict[int, int]) -> str:
    """What a batch did, from its acks: the first failure decides (then nothing was applied)."""
    failures = [err for _seq, err in sorted(answers.items()) if err]
    if not failures:
        return "deleted"
    err = failures[0]
    if err == errno.EBUSY:
        return "not empty"
    if err == errno.ENOENT:
        return "absent"
    return f"error: {errno.errorcode.get(err, err)}"


def delete_table_if_empty(family: str, table: str, chains: tuple[str, ...] | list[str] = (),
                          timeout: float = 5.0) -> str:
    """Delete `chains` and table `family` `table` if all are empty (one transaction): "deleted",
    "not empty", "absent" (a listed chain or the table), or the kernel's error; never raises for
    an answer of the kernel."""
    batch = render_delete_empty_table(family, table, chains)
    last = 2 + len(chains)
    answers: dict[int, int] = {}
    with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
        sock.settimeout(timeout)
        sock.bind((0, 0))
        sock.send(batch)
        while last not in answers:
            try:
                answers.update(acks(sock.recv(65536)))
            except OSError as e:
                return f"no answer: {e}"
    return outcome(answers)


# ---- reading named counters: one netlink dump, no nft cache load ----
# `nft -j list counters table ...` loads nft's whole cache (every chain and rule of the host)
# before printing: ~0.3 s for a table of 10,000 endpoint chains. A GETOBJ dump filtered by table
# and type reads just the counters.
NLM_F_DUMP = 0x300
NLM_F_DUMP_INTR = 0x10
NLMSG_DONE = 3
NFT_MSG_NEWOBJ, NFT_MSG_GETOBJ = 18, 19
NFTA_OBJ_TABLE, NFTA_OBJ_NAME, NFTA_OBJ_TYPE, NFTA_OBJ_DATA = 1, 2, 3, 4
NFT_OBJECT_COUNTER = 1
NFTA_COUNTER_BYTES, NFTA_COUNTER_PACKETS = 1, 2
_ATTR = struct.Struct("=HH")
_TYPE_MASK = 0x3FFF  # without NLA_F_NESTED / NLA_F_NET_BYTEORDER


class DumpInterrupted(Exception):
    """The ruleset changed during the dump (NLM_F_DUMP_INTR): read again."""


def render_get_counters(family: str, table: str, seq: int = 1) -> bytes:
    """A dump request for the named counters of table `family` `table`."""
    if family not in FAMILIES:
        raise ValueError(f"unknown nftables family {family!r}")
    return _message((NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETOBJ, NLM_F_REQUEST | NLM_F_DUMP, seq,
                    FAMILIES[family], 0, _attribute(NFTA_OBJ_TABLE, _check_name("table", table))
                    + _attribute(NFTA_OBJ_TYPE, struct.pack(">I", NFT_OBJECT_COUNTER)))


def _attributes(data: bytes, offset: int, end: int) -> dict[int, bytes]:
    found = {}
    while offset + _ATTR.size <= end:
        length, atype = _ATTR.unpack_from(data, offset)
        if length < _ATTR.size:
            break
        found[atype & _TYPE_MASK] = data[offset + _ATTR.size:offset + length]
        offset += (length + 3) & ~3
    return found


def parse_counters(data: bytes, into: dict[str, tuple[int, int]]) -> bool:
    """Add the counters of one recv()'s messages to `into` (name -> (packets, bytes)); True once
    the dump is done. OSError for a netlink error, DumpInterrupted when the dump was cut short."""
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, mtype, flags, _seq, _pid = _HEADER.unpack_from(data, offset)
        if length < _HEADER.size:
            break
        if flags & NLM_F_DUMP_INTR:
            raise DumpInterrupted()
        if mtype == NLMSG_DONE:
            return True
        if mtype == NLMSG_ERROR:
            err = -struct.unpack_from("=i", data, offset + _HEADER.size)[0]
            if err:
                raise OSError(err, f"nftables counter dump: {errno.errorcode.get(err, err)}")
        elif mtype == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWOBJ:
            attrs = _attributes(data, offset + _HEADER.size + 4, offset + length)  # after nfgenmsg
            name, inner = attrs.get(NFTA_OBJ_NAME), attrs.get(NFTA_OBJ_DATA)
            if name is not None and inner is not None:
                values = _attributes(inner, 0, len(inner))
                packets = int.from_bytes(values.get(NFTA_COUNTER_PACKETS, b"\0"), "big")
                octets = int.from_bytes(values.get(NFTA_COUNTER_BYTES, b"\0"), "big")
                into[name.rstrip(b"\0").decode(errors="replace")] = (packets, octets)
        offset += (length + 3) & ~3
    return False


def dump_counters(family: str, table: str, timeout: float = 5.0, attempts: int = 3) -> dict[str, tuple[int, int]]:
    """name -> (packets, bytes) of every named counter of the table; OSError (ENOENT: no such
    table) when the kernel refuses."""
    for attempt in range(attempts):
        found: dict[str, tuple[int, int]] = {}
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER) as sock:
            sock.settimeout(timeout)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.bind((0, 0))
            sock.send(render_get_counters(family, table))
            try:
                while not parse_counters(sock.recv(1 << 20), found):
                    pass
            except DumpInterrupted:
                if attempt + 1 < attempts:
                    continue
                raise OSError(errno.EINTR, "nftables counter dump interrupted by ruleset changes") from None
        return found
    return {}
