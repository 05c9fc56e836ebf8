"""The zone index and how a question is answered from it (pure: no I/O).

The index holds each Service's records apart (so an event rebuilds one Service), the names they
make (with every ancestor up to the zone, the empty non-terminals that answer NODATA rather than
NXDOMAIN) and the namespaces. `generation` grows at every change: the server's cache of wire
answers is valid for one generation.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
from dns.rdatatype import AAAA, ANY, CNAME, NS, PTR, SOA, SRV, A

from pocketkube.dns.records import TTL, Records, absolute, undashed

REVERSE_ZONES = ("in-addr.arpa.", "ip6.arpa.")
MEMO_ENTRIES = 50_000


@dataclass
class Answer:
    """What the zone says: rcode, sections, and whether the zone is authoritative for the name
    (False: not ours, forward it). `chase` is an external CNAME target left to the forwarder."""

    rcode: int = dns.rcode.NOERROR
    answer: list[dns.rrset.RRset] = field(default_factory=list)
    authority: list[dns.rrset.RRset] = field(default_factory=list)
    additional: list[dns.rrset.RRset] = field(default_factory=list)
    authoritative: bool = True
    chase: str = ""


def _rrset(owner: str, rdtype: int, rdatas: tuple[str, ...] | list[str], ttl: int = TTL) -> dns.rrset.RRset:
    return dns.rrset.from_text_list(owner, ttl, dns.rdataclass.IN, rdtype, list(rdatas))


class ZoneIndex:
    def __init__(self, zone: str = "cluster.local", dns_ip: str = "") -> None:
        self.zone = absolute(zone)
        self.dns_ip = dns_ip
        self.generation = 0
        self._by_service: dict[str, Records] = {}
        self._names: dict[str, dict[str, dict[int, tuple[str, ...]]]] = {}  # owner → service → records
        self._ancestors: Counter[str] = Counter()  # empty non-terminals below the zone
        self.namespaces: set[str] = set()
        self.ready = True  # False until the informers' first listing (ClusterDNS sets it)
        self._serial = 1
        self._memo: dict[tuple[str, int], Answer] = {}  # answers of this generation

    # ---- updates ----
    def _ancestry(self, owner: str) -> list[str]:
        out = []
        name = owner
        while name.endswith(self.zone) and name != self.zone:
            name = name.split(".", 1)[1]
            if name and name != self.zone:
                out.append(name)
        return out

    def set_service(self, key: str, records: Records) -> None:
        """Replace the records of Service `key` (namespace/name); {} removes them."""
        old = self._by_service.pop(key, {})
        if old == records:
            if records:
                self._by_service[key] = records
            return
        for owner in old:
            group = self._names.get(owner, {})
            group.pop(key, None)
            if not group:
                self._names.pop(owner, None)
            for name in self._ancestry(owner):
                self._ancestors[name] -= 1
                if self._ancestors[name] <= 0:
                    del self._ancestors[name]
        for owner, rrs in records.items():
            self._names.setdefault(owner, {})[key] = rrs
            self._ancestors.update(self._ancestry(owner))
        if records:
            self._by_service[key] = records
        self._changed()

    def set_ready(self) -> None:
        if not self.ready:
            self.ready = True
            self._changed()

    def set_namespace(self, name: str, present: bool) -> None:
        if (name in self.namespaces) != present:
            (self.namespaces.add if present else self.namespaces.discard)(name)
            self._changed()

    def _changed(self) -> None:
        self._memo.clear()
        self.generation += 1
        self._serial = (self._serial + 1) % 2**32 or 1

    # ---- lookups ----
    def records(self, owner: str) -> dict[int, tuple[str, ...]] | None:
        group = self._names.get(owner)
        if not group:
            return None
        if len(group) == 1:
            return next(iter(group.values()))
        merged: dict[int, tuple[str, ...]] = {}
        for rrs in group.values():
            for rdtype, rdatas in rrs.items():
                merged[rdtype] = tuple(dict.fromkeys((*merged.get(rdtype, ()), *rdatas)))
        return merged

    def in_zone(self, owner: str) -> bool:
        return owner == self.zone or owner.endswith("." + self.zone)

    def soa(self) -> dns.rrset.RRset:
        return _rrset(self.zone, SOA, [f"ns.dns.{self.zone} hostmaster.{self.zone} {self._serial} 7200 1800 86400 {TTL}"])

    def _exists(self, owner: str) -> bool:
        if owner == self.zone or self._ancestors.get(owner, 0) > 0:
            return True
        labels = owner[: -len(self.zone) - 1].split(".")
        if labels in (["svc"], ["pod"], ["dns"], ["ns", "dns"]):
            return True
        return len(labels) == 2 and labels[1] in ("svc", "pod") and labels[0] in self.namespaces

    def _pod(self, owner: str) -> dict[int, tuple[str, ...]] | None:
        """`1-2-3-4.<ns>.pod.<zone>` (CoreDNS `pods insecure`: any well-formed address)."""
        labels = owner[: -len(self.zone) - 1].split(".")
        if len(labels) != 3 or labels[2] != "pod":
            return None
        ip = undashed(labels[0])
        if ip is None:
            return None
        return {A if ":" not in ip else AAAA: (ip,)}

    def _special(self, owner: str) -> dict[int, tuple[str, ...]] | None:
        if owner == self.zone:
            return {NS: (f"ns.dns.{self.zone}",)}
        if owner == f"ns.dns.{self.zone}" and self.dns_ip:
            return {A if ":" not in self.dns_ip else AAAA: (self.dns_ip,)}
        return None

    def answer(self, qname: str, qtype: int) -> Answer:
        """The zone's answer for (lower-case absolute qname, qtype); authoritative=False when the
        name is not ours (outside the zone, or a reverse name for an address we do not know).
        Answers are shared until the next change: callers must not modify them."""
        key = (qname, qtype)
        found = self._memo.get(key)
        if found is None:
            if len(self._memo) >= MEMO_ENTRIES:
                self._memo.clear()
            found = self._memo[key] = self._answer(qname, qtype)
        return found

    def _answer(self, qname: str, qtype: int) -> Answer:
        if not self.in_zone(qname):
            rrs = self.records(qname) if qname.endswith(REVERSE_ZONES) else None
            if rrs is None:
                return Answer(authoritative=False)
            return self._from_records(qname, qtype, rrs, soa_owner_zone=False)
        if qtype == SOA and qname == self.zone:
            return Answer(answer=[self.soa()])
        rrs = self.records(qname) or self._special(qname) or self._pod(qname)
        if rrs is None:
            if self._exists(qname):
                return Answer(authority=[self.soa()])
            return Answer(rcode=dns.rcode.NXDOMAIN, authority=[self.soa()])
        return self._from_records(qname, qtype, rrs)

    def _from_records(self, qname: str, qtype: int, rrs: dict[int, tuple[str, ...]],
                      soa_owner_zone: bool = True) -> Answer:
        out = Answer()
        if CNAME in rrs and qtype != CNAME:
            target = rrs[CNAME][0]
            out.answer.append(_rrset(qname, CNAME, rrs[CNAME]))
            chased = self.records(target) if self.in_zone(target) else None
            if chased is not None and qtype in chased:
                out.answer.append(_rrset(target, qtype, chased[qtype]))
            elif not self.in_zone(target):
                out.chase = target
            return out
        types = list(rrs) if qtype == ANY else [qtype]
        for rdtype in types:
            if rrs.get(rdtype):
                out.answer.append(_rrset(qname, rdtype, rrs[rdtype]))
        if not out.answer:
            out.authority.append(self.soa())  # NODATA: the name exists, not with this type
            return out
        if qtype == SRV:
            for target in dict.fromkeys(r.split()[3] for r in rrs[SRV]):
                extra = self.records(target) or {}
                for rdtype in (A, AAAA):
                    if extra.get(rdtype):
                        out.additional.append(_rrset(target, rdtype, extra[rdtype]))
        if qtype == NS and qname == self.zone:
            extra = self._special(f"ns.dns.{self.zone}") or {}
            for rdtype, rdatas in extra.items():
                out.additional.append(_rrset(f"ns.dns.{self.zone}", rdtype, rdatas))
        return out


__all__ = ["PTR", "Answer", "ZoneIndex"]
