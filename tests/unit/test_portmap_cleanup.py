"""The batch that removes the CNI portmap plugin's shared chains (net.portmap; the kernel side is
tests/integration/test_portmap_chains.py)."""

from pocketkube.net.portmap import render_idle_chain_removal


def test_every_rule_portmap_made_is_deleted_by_its_exact_spec_before_any_chain():
    lines = render_idle_chain_removal().splitlines()
    assert lines[0] == "*nat" and lines[-1] == "COMMIT"
    body = lines[1:-1]
    deletes = [i for i, line in enumerate(body) if line.startswith("-D ")]
    removals = [i for i, line in enumerate(body) if line.startswith("-X ")]
    assert len(deletes) == 5 and len(removals) == 3 and max(deletes) < min(removals)
    assert "-D PREROUTING -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in body
    assert "-D OUTPUT -m addrtype --dst-type LOCAL -j CNI-HOSTPORT-DNAT" in body
    assert "-D CNI-HOSTPORT-MASQ -m mark --mark 0x2000/0x2000 -j MASQUERADE" in body
    assert ('-D CNI-HOSTPORT-SETMARK -m comment --comment "CNI portfwd masquerade mark" '
            "-j MARK --set-xmark 0x2000/0x2000") in body
    assert [line.split()[1] for line in body if line.startswith("-X ")] == [
        "CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"]
    assert not any(line.startswith(("-F", "-A", "-I")) for line in body)  # never a flush: in-use chains fail


def test_the_mark_follows_the_masquerade_bit():
    assert "--mark 0x4000/0x4000" in render_idle_chain_removal(14)
