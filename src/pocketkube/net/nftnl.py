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
