"""A fake of nft's transaction semantics, for testing the nftables data plane without a kernel.

It keeps chains, sets, verdict and counter maps and named counters of one table and applies a script the way the kernel
does: every command or none, references must be gone before what they point at is deleted,
map elements must not be added twice nor deleted when absent. A script that breaks a rule
raises NftError, as a real runner would; so a renderer whose deltas pass here produces
transactions the kernel accepts. It implements the NftRunner protocol, so a data plane can be
driven with it.
"""

from __future__ import annotations

import copy
import json
import re

from pocketkube.proxy.nftables.nft import NftError

__all__ = ["FakeNft"]

_CHAIN_REF = re.compile(r"(?:goto )([^\s,]+)")
_SET_REF = re.compile(r"@([^\s,]+)")
_ANY_REF = re.compile(r"(?:goto |@)([^\s,]+)")
_COUNTER_REF = re.compile(r'counter name "([^"]+)"')


def _require(ok: bool, message: str) -> None:
    if not ok:
        raise NftError(message)


class FakeNft:
    name = "fake"

    def __init__(self) -> None:
        self.chains: dict[str, list[str]] = {}
        self.sets: dict[str, str] = {}
        self.maps: dict[str, dict[str, str]] = {}
        self.set_elements: dict[str, set[str]] = {}  # elements of the non-dynamic sets
        self.counters: dict[str, int] = {}  # named counter -> packets (tests may bump them)
        self.scripts: list[str] = []  # every script applied, in order

    def state(self) -> tuple[dict, dict, dict, dict]:
        return self.chains, self.sets, self.maps, self.set_elements

    def apply(self, script: str) -> None:
        """Apply `script` as one transaction: on an error nothing changes."""
        trial = copy.deepcopy(self)
        for line in script.splitlines():
            trial._command(line)
        trial.scripts.append(script)
        self.__dict__.update(trial.__dict__)

    # NftRunner
    def run_sync(self, script: str) -> None:
        self.apply(script)

    async def run(self, script: str) -> None:
        self.apply(script)

    async def query_json(self, command: str) -> str:
        """`list counters table ...` as nft -j prints it (other reads are not faked)."""
        if not command.startswith("list counters"):
            raise NftError(f"unexpected query {command}")
        return json.dumps({"nftables": [{"metainfo": {"json_schema_version": 1}}] + [
            {"counter": {"family": "ip", "name": name, "table": "t", "handle": i, "packets": n, "bytes": 0}}
            for i, (name, n) in enumerate(self.counters.items())]})

    async def read_counters(self, family: str, table: str) -> dict[str, int]:
        return dict(self.counters)

    def close(self) -> None:
        pass

    def _counter_referenced(self, name: str) -> bool:
        if any(name in _COUNTER_REF.findall(r) for rules in self.chains.values() for r in rules):
            return True
        return any(v == f'"{name}"' for m in self.maps.values() for v in m.values())

    def _referenced(self, name: str) -> bool:
        texts = [r for rules in self.chains.values() for r in rules]
        texts += [v for m in self.maps.values() for v in m.values()]
        return any(name in _ANY_REF.findall(t) for t in texts)

    def _command(self, line: str) -> None:
        verb, obj, _family, _table, *rest = line.split(" ", 4)
        rest = rest[0] if rest else ""
        name, _, body = rest.partition(" ")
        if obj == "table":
            if verb == "delete":
                self.chains, self.sets, self.maps, self.set_elements = {}, {}, {}, {}
                self.counters = {}
        elif obj == "counter":
            self._counter(verb, name, body, line)
        elif obj in ("chain", "set", "map"):
            self._object(verb, obj, name, body, line)
        elif obj == "rule":
            self._rule(name, body, line)
        elif obj == "element":
            self._elements(verb, name, body, line)
        else:
            raise NftError(f"unexpected command {line}")

    def _object(self, verb: str, obj: str, name: str, body: str, line: str) -> None:
        store = {"chain": self.chains, "set": self.sets, "map": self.maps}[obj]
        if verb == "add":
            store.setdefault(name, {"chain": [], "set": body, "map": {}}[obj])
        elif verb == "flush":
            store[name].clear()
        else:
            _require(name in store, line)
            _require(not self._referenced(name), f"{name} still referenced: {line}")
            _require(not (obj == "chain" and store[name]), f"chain not empty: {line}")
            del store[name]
            self.set_elements.pop(name, None)

    def _counter(self, verb: str, name: str, body: str, line: str) -> None:
        if verb == "add":
            seeded = re.search(r"packets (\d+)", body)
            self.counters.setdefault(name, int(seeded.group(1)) if seeded else 0)
        else:
            _require(name in self.counters, line)
            _require(not self._counter_referenced(name), f"counter {name} still referenced: {line}")
            del self.counters[name]

    def _rule(self, chain: str, body: str, line: str) -> None:
        _require(chain in self.chains, line)
        for ref in _COUNTER_REF.findall(body):
            _require(ref in self.counters, f"unknown counter {ref}: {line}")
        for ref in _CHAIN_REF.findall(body):
            _require(ref in self.chains, f"unknown chain {ref}: {line}")
        for ref in _SET_REF.findall(body):
            _require(ref in self.sets or ref in self.maps, f"unknown set {ref}: {line}")
        self.chains[chain].append(body)

    def _elements(self, verb: str, map_name: str, body: str, line: str) -> None:
        if map_name in self.sets:
            self._set_elements(verb, map_name, body, line)
            return
        elements = self.maps[map_name]
        for item in body.strip("{} ").split(", "):
            key, _, verdict = item.partition(" : ")
            if verb == "add":
                _require(key not in elements, f"element exists: {line}")
                if verdict.startswith('"'):
                    _require(verdict.strip('"') in self.counters, f"unknown counter: {line}")
                else:
                    _require(verdict in ("drop",) or verdict.split()[1] in self.chains, line)
                elements[key] = verdict
            else:
                _require(key in elements, f"no such element: {line}")
                del elements[key]

    def _set_elements(self, verb: str, set_name: str, body: str, line: str) -> None:
        elements = self.set_elements.setdefault(set_name, set())
        for key in body.strip("{} ").split(", "):
            if verb == "add":
                _require(key not in elements, f"element exists: {line}")
                elements.add(key)
            else:
                _require(key in elements, f"no such element: {line}")
                elements.discard(key)
        if not elements:
            del self.set_elements[set_name]
