"""The live map's acceptance checks (ui.md §6) in Debian's Chromium against real clusters: access
(401, the one-time link, kubectl proxy), the seed's topology, exact counts of real connections on
both data planes, churn without a reload, traffic policies, an API server restart, accessibility,
security headers, scale, and the seed's screenshot for people.

Two process-runtime clusters for the module: nftables (as root) and userspace. Ranges: nodes
127.221.1.x / 127.226.1.x, pods 127.222.x / 127.227.x, Services 127.223.x / 127.228.x, load
balancers 127.224.0.x / 127.229.0.x (this topic's own). Every page fails its test on console
errors and CSP violations.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import threading
import time

import pytest
from ui_browser_helpers import (
    ROOT,
    SEED_ROUTE,
    Api,
    connect,
    create_seed,
    goto,
    kubectl_proxy,
    logged_in,
    login_link,
    open_map,
    raw,
    refused,
)

from pocketkube.apiserver.ui import security
from pocketkube.proxy.select import nftables_usable
from pocketkube.testing import browser
from pocketkube.testing.procs import preferred_kubectl, running_cluster
from pocketkube.testing.requires import KUBECTL, NFT, NGINX, have_nginx, require, require_module, requires
from pocketkube.testing.ui_page import POD, ROW, entries, pods, rows, total, wait_count, wait_total
from pocketkube.testing.waits import wait_for

pytestmark = [requires(browser.available(), browser.HINT), requires(have_nginx(), NGINX),
              requires(os.path.exists("/usr/bin/kubectl"), KUBECTL), pytest.mark.slow, pytest.mark.timeout(300)]

RANGES = {
    "nftables": {"node_ip_base": "127.221.1.0", "pod_cidr_base": "127.222.0.0/16",
                 "service_cidr": "127.223.0.0/16", "lb_pool": "127.224.0.0/24"},
    "userspace": {"node_ip_base": "127.226.1.0", "pod_cidr_base": "127.227.0.0/16",
                  "service_cidr": "127.228.0.0/16", "lb_pool": "127.229.0.0/24"},
}
AXE = ROOT / "tests" / "vendor" / "axe-core-4.14.1" / "axe.min.js"
SHOT = ROOT / "build" / "ui-seed-cluster.png"
DOCS_SHOT = ROOT / "docs" / "ui-seed.png"
WINDOW = 10  # TRAFFIC.windowSeconds: the server's rate window
# A restart's refused requests are failed loads in the console: the test's own doing.
RESTART_NOISE = ("Failed to load resource", "net::ERR_")


class Seeded:
    """One cluster with the seed running, a logged-in browser context and an open map page."""

    def __init__(self, plane, cluster, k, context, page, took):
        self.plane, self.cluster, self.k, self.context, self.page = plane, cluster, k, context, page
        self.api = Api(cluster)
        self.took = took  # seconds from the seed's 3 endpoints Ready to the page drawing them

    def node_ip(self, i: int) -> str:
        return self.cluster.node_ip(i)

    def reset(self) -> None:
        self.page.click("[data-testid=reset-baseline]")
        wait_total(self.page, POD, 0)


def seeded_cluster(chromium, plane: str):
    if plane == "nftables":
        require(nftables_usable(), NFT)
    with running_cluster(f"pk-uib-{plane[:3]}-", nodes=3, extra_args=["--dataplane", plane, "--no-dns"],
                         **RANGES[plane]) as cluster:
        k = preferred_kubectl(cluster.kubeconfig)
        k.cwd = ROOT
        try:
            with logged_in(chromium, cluster) as context:
                # The page is open before the objects exist: it says so, then draws them live.
                page = open_map(context, cluster)
                page.wait_for_selector("[data-testid=error]:has-text('not found')", timeout=5000)
                create_seed(k)
                api = Api(cluster)
                wait_for(lambda: len(api.ready_endpoints("myapp-service")) == 3, timeout=60, interval=0.05,
                         what="the seed's 3 endpoints Ready")
                t0 = time.monotonic()
                page.wait_for_function(
                    "() => [...document.querySelectorAll('[data-testid=pod]')].filter(p => p.dataset.state === 'Ready')"
                    ".length === 3", timeout=10000)
                yield Seeded(plane, cluster, k, context, page, time.monotonic() - t0)
                browser.assert_clean(page, allow=RESTART_NOISE)
        finally:
            k.close()


@pytest.fixture(scope="module")
def chromium():
    with browser.launch_browser() as b:
        yield b


@pytest.fixture(scope="module")
def nft(chromium):
    yield from seeded_cluster(chromium, "nftables")


@pytest.fixture(scope="module")
def userspace(chromium):
    yield from seeded_cluster(chromium, "userspace")


@pytest.fixture(scope="module")
def expect():
    sync_api = require_module("playwright.sync_api")
    sync_api.expect.set_options(timeout=10000)
    return sync_api.expect


# ---- 1. access ----

def test_access_401_login_link_once_and_kubectl_proxy(chromium, nft, expect):
    cluster = nft.cluster
    with browser.new_context(chromium, ignore_https_errors=True) as anonymous:
        denied = browser.open_page(anonymous)
        response = denied.goto(cluster.url + "/ui/")
        assert response.status == 401
        denied.close()
        page = browser.open_page(anonymous)
        link = login_link(cluster)
        response = page.goto(link)
        assert response.status == 200 and page.url == cluster.url + "/ui/", "the token left the URL (303)"
        assert response.request.redirected_from.url == link
        assert response.request.redirected_from.response().status == 303
        (cookie,) = anonymous.cookies()
        assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"], cookie["secure"], cookie["path"]) == \
            ("pocketkube-ui", True, "Strict", True, "/ui")
        expect(page.locator("#status")).to_have_attribute("data-state", "live")
        again = browser.open_page(anonymous)
        response = again.goto(link)
        assert response.status == 401
        assert "login link expired or already used" in again.content()
        browser.assert_clean(page)
    with kubectl_proxy(nft.k) as proxy, browser.new_context(chromium) as plain:
        page = browser.open_page(plain)
        page.goto(proxy + "/ui/" + SEED_ROUTE)
        expect(page.locator("#status")).to_have_attribute("data-state", "live")
        expect(page.locator(POD)).to_have_count(3)
        # The stream flows through the proxy: traffic ticks keep arriving.
        page.wait_for_function("() => performance.getEntriesByName('pk-tick').length > 0", timeout=5000)
        connect(nft.node_ip(1), 30008, 5)
        wait_total(page, POD, 5)
        browser.assert_clean(page)


# ---- 2. topology ----

def test_seed_topology(nft, expect):
    assert nft.took < 2.0, f"the page drew the seed's pods {nft.took:.2f} s after they were Ready"
    page = nft.page
    got = entries(page)
    assert sorted(got) == [f"NodePort/{nft.node_ip(i)}:30008" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        e = got[f"NodePort/{nft.node_ip(i)}:30008"]
        assert e["node"] == f"node-{i}" and e["ready"] == "true"
        assert f"node-{i} · {nft.node_ip(i)}:30008" in e["text"]
    svc = nft.api.get("/api/v1/namespaces/default/services/myapp-service")
    expect(page.locator("[data-testid=service]")).to_have_attribute("data-cluster-ip", svc["spec"]["clusterIP"])
    expect(page.locator("[data-testid=service]")).to_contain_text(f"NodePort · {svc['spec']['clusterIP']}:80")
    expect(page.locator("svg[data-testid=map] desc")).to_have_text("3 nodes, myapp-service, 3/3 endpoints ready")
    actual = nft.api.pods("app=myapp")
    on_map = pods(page)
    assert set(on_map) == set(actual)
    for name, p in actual.items():
        assert on_map[name]["node"] == p["node"] and on_map[name]["state"] == "Ready"
        box = page.locator(f"[data-testid=pod-group][data-node={p['node']}] [data-testid=pod][data-pod={name}]")
        expect(box).to_contain_text(f"{p['ip']}:80")
    assert set(rows(page)) == set(actual)
    # Real pod names are long (Deployment prefix + hashes): each fits its box, before its total.
    crowded = page.eval_on_selector_all(POD, """gs => gs.filter(g => {
        const name = g.querySelector('text.title').getBBox(), count = g.querySelector('text.total').getBBox();
        const box = g.querySelector('rect.pod-box').getBBox();
        return name.x + name.width > Math.min(count.x - 4, box.x + box.width); }).map(g => g.dataset.pod)""")
    assert crowded == [], f"pod names overflow their boxes: {crowded}"
    expect(page.locator("[data-testid=curl-line]")).to_have_text(
        [f"curl http://{nft.node_ip(i)}:30008" for i in (1, 2, 3)])
    expect(page.locator("[data-testid=dataplane]")).to_contain_text("nftables")


# ---- 3. exact counts, both data planes ----

@pytest.mark.parametrize("plane", ["nftables", "userspace"])
def test_300_connections_counted_exactly(plane, request):
    s: Seeded = request.getfixturevalue("nft" if plane == "nftables" else "userspace")
    page = s.page
    s.reset()
    n = 300
    assert connect(s.node_ip(1), 30008, n) == n
    done = time.monotonic()
    entry = f"NodePort/{s.node_ip(1)}:30008"
    wait_total(page, f'[data-testid=entry][data-entry-id="{entry}"]', n, timeout=3000)
    wait_total(page, POD, n, timeout=3000)
    on_map, table = pods(page), rows(page)
    share = 1 / len(on_map)
    sigma = math.sqrt(share * (1 - share) / n)
    for name, p in on_map.items():
        got = int(p["connTotal"])
        assert got > 0, f"{name} took none of {n}: {on_map}"
        assert abs(got / n - share) <= 5 * sigma, f"{name}: {got}/{n} is more than 5σ from 1/{len(on_map)}"
        assert table[name]["connTotal"] == p["connTotal"] and table[name]["rate"] == p["rate"]
        assert abs(float(p["share"]) - got / n) < 1e-3
    assert total(page, "[data-testid=entry]") == n, "only node-1's entry took connections"
    page.wait_for_function("() => [...document.querySelectorAll('[data-testid=pod]')].every(p => +p.dataset.rate === 0)",
                           timeout=(WINDOW + 2) * 1000)
    assert time.monotonic() - done < WINDOW + 2 + 1
    browser.assert_clean(page, allow=RESTART_NOISE)


# ---- 4. churn ----

def test_churn_without_reload(nft, expect):
    page = nft.page
    origin = page.evaluate("performance.timeOrigin")
    before = nft.api.pods("app=myapp")
    victim = sorted(before)[0]
    nft.k.ok("delete", "pod", victim, "--wait=false")
    expect(page.locator(f"[data-testid=pod][data-pod={victim}]")).to_have_count(0, timeout=30000)

    def replacement():
        now = {n: p for n, p in nft.api.pods("app=myapp").items() if n not in before and p["ready"]}
        return next(iter(now.items()), None)
    name, p = wait_for(replacement, timeout=30, what="the ReplicaSet's replacement pod Ready")
    group = page.locator(f"[data-testid=pod-group][data-node={p['node']}]")
    expect(group.locator(f"[data-testid=pod][data-pod={name}]")).to_have_attribute("data-state", "Ready")
    expect(page.locator('[data-testid=edge][data-to="' + f"{before[victim]['ip']}:80" + '"]')).to_have_count(0)
    expect(page.locator(ROW)).to_have_count(3)
    assert set(rows(page)) == set(pods(page)) == set(before) - {victim} | {name}
    changes = page.locator("[data-testid=changes]")
    expect(changes).to_contain_text(f"Pod {victim} on {before[victim]['node']} removed")
    expect(changes).to_contain_text(f"Pod {name} on {p['node']} added")
    assert page.evaluate("performance.timeOrigin") == origin, "the page was reloaded"
    browser.assert_clean(page)


# ---- 5. policies ----

def service(name: str, node_port: int, selector: dict, **spec) -> str:
    import json

    return json.dumps({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
                       "spec": {"type": "NodePort", "selector": selector,
                                "ports": [{"port": 80, "targetPort": 80, "nodePort": node_port}], **spec}})


def show(s: Seeded, name: str, desc: str, expect):
    page = s.page
    page.evaluate("r => { location.hash = r; }", f"#/map/default/{name}")
    expect(page.locator("svg[data-testid=map] desc")).to_have_text(desc)
    expect(page.locator("#status")).to_have_attribute("data-state", "live")
    s.reset()
    return page


def test_policies_local_affinity_and_no_endpoints(nft, expect):
    selector = {"app": "myapp", "type": "front-end"}
    nft.k.ok("create", "-f", "-", input=service("myapp-local", 30009, selector, externalTrafficPolicy="Local"))
    nft.k.ok("create", "-f", "-", input=service("myapp-sticky", 30010, selector, sessionAffinity="ClientIP"))
    nft.k.ok("create", "-f", "-", input=service("nobody", 30011, {"app": "nobody"}))
    try:
        # externalTrafficPolicy Local: node-2 sends its NodePort's connections to its own pods only.
        page = show(nft, "myapp-local", "3 nodes, myapp-local, 3/3 endpoints ready", expect)
        expect(page.locator("[data-testid=service]")).to_contain_text("externalTrafficPolicy Local")
        local = [n for n, p in nft.api.pods("app=myapp").items() if p["node"] == "node-2"]
        assert local, "the seed has a pod on node-2"
        assert connect(nft.node_ip(2), 30009, 60) == 60
        wait_total(page, POD, 60)
        counted = {n: int(p["connTotal"]) for n, p in pods(page).items() if int(p["connTotal"])}
        assert set(counted) <= set(local), f"pods off node-2 counted: {counted}"
        # sessionAffinity ClientIP: one client, one pod, 100 %.
        page = show(nft, "myapp-sticky", "3 nodes, myapp-sticky, 3/3 endpoints ready", expect)
        expect(page.locator("[data-testid=service]")).to_contain_text("affinity ClientIP")
        assert connect(nft.node_ip(1), 30010, 30) == 30
        wait_total(page, POD, 30)
        counted = {n: p for n, p in pods(page).items() if int(p["connTotal"])}
        assert len(counted) == 1 and float(next(iter(counted.values()))["share"]) == 1.0, counted
        # No endpoints: the message and the refused counter (nftables rejects and counts).
        page = show(nft, "nobody", "3 nodes, nobody, 0/0 endpoints ready", expect)
        expect(page.locator("[data-testid=no-endpoints]")).to_contain_text(
            "No ready endpoints: no pods match the selector app=nobody")
        assert refused(nft.node_ip(1), 30011, 4) == 4
        expect(page.locator("[data-testid=refused]")).to_have_attribute("data-conn-total", "4")
        browser.assert_clean(page)
    finally:
        nft.k.run("delete", "service", "myapp-local", "myapp-sticky", "nobody")
        nft.page.evaluate("r => { location.hash = r; }", SEED_ROUTE)
        expect(nft.page.locator(POD)).to_have_count(3)


# ---- 6. resilience ----

def server_pid(cluster) -> int:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if b"server" in argv and str(cluster.data_dir).encode() in argv:
                return int(entry)
    raise AssertionError("no server process")


def picture(page) -> dict:
    return {"entries": {i: (e["node"], e["ready"]) for i, e in entries(page).items()},
            "pods": {n: (p["node"], p["state"], p["key"]) for n, p in pods(page).items()},
            "rows": {n: r["cells"][:4] for n, r in rows(page).items()},
            "desc": page.text_content("svg[data-testid=map] desc")}


def test_api_server_restart_reconnects_to_the_same_state(userspace, expect):
    page = userspace.page
    origin = page.evaluate("performance.timeOrigin")
    old = server_pid(userspace.cluster)
    os.kill(old, signal.SIGKILL)   # `up` restarts a crashed API server
    expect(page.locator("#status")).to_have_attribute("data-state", "reconnecting", timeout=10000)
    expect(page.locator("#status")).to_have_text("Reconnecting…")
    expect(page.locator("#status")).to_have_attribute("data-state", "live", timeout=60000)
    assert server_pid(userspace.cluster) != old
    fresh = open_map(userspace.context, userspace.cluster)
    try:
        expect(fresh.locator(POD)).to_have_count(3)
        wait_for(lambda: picture(page) == picture(fresh), timeout=5, what="the reconnected page equal to a fresh load")
        assert page.evaluate("performance.timeOrigin") == origin
        browser.assert_clean(fresh)
    finally:
        fresh.close()
    browser.assert_clean(page, allow=RESTART_NOISE)


# ---- 7. accessibility ----

def test_accessibility_on_the_real_page(chromium, nft, expect):
    # axe is injected as a script the page's CSP would refuse: this context alone bypasses it.
    with logged_in(chromium, nft.cluster, bypass_csp=True, reduced_motion="reduce") as context:
        page = open_map(context, nft.cluster)
        expect(page.locator(POD)).to_have_count(3)
        connect(nft.node_ip(1), 30008, 30)
        wait_total(page, POD, 30)
        page.wait_for_timeout(300)  # frames in which a dot could have appeared
        expect(page.locator("[data-testid=dot]")).to_have_count(0)   # reduced motion: none at all
        page.add_script_tag(path=str(AXE))
        for route in (SEED_ROUTE, "#/overview"):
            page.evaluate("r => { location.hash = r; }", route)
            page.wait_for_selector("[data-testid=overview-node]" if "overview" in route else POD)
            bad = [v for v in page.evaluate("async () => (await axe.run(document)).violations")
                   if v["impact"] in ("serious", "critical")]
            assert not bad, f"{route}: " + "; ".join(f"{v['id']}: {v['help']} at {[n['target'] for n in v['nodes']][:3]}" for v in bad)
        browser.assert_clean(page)
    page = nft.page
    svg = page.locator("svg[data-testid=map][role=img]")
    expect(svg.locator("title").first).to_contain_text("myapp-service")
    expect(svg.locator("desc")).to_have_text("3 nodes, myapp-service, 3/3 endpoints ready")
    seen = []
    page.focus("[data-testid=service-picker]")
    for _ in range(30):
        seen.append(page.evaluate("() => { const e = document.activeElement; return e.dataset.testid || e.className; }"))
        if seen[-1] == "pod":
            ring = page.evaluate("getComputedStyle(document.activeElement.querySelector('.focus-ring')).stroke")
            assert ring not in ("none", ""), "a focused pod shows a visible focus ring"
        page.keyboard.press("Tab")
    for wanted in ("service-picker", "pause", "reset-baseline", "entry", "service", "pod", "table-scroll"):
        assert wanted in seen, f"Tab never reached {wanted}: {seen}"
    # Pause: no dots while traffic flows; the table equals the map's data-*.
    page.click("[data-testid=pause]")
    expect(page.locator("[data-testid=pause]")).to_have_attribute("aria-pressed", "true")
    s0 = total(page, POD)
    connect(nft.node_ip(2), 30008, 20)
    wait_total(page, POD, s0 + 20)
    expect(page.locator("[data-testid=dot]")).to_have_count(0)
    page.click("[data-testid=pause]")
    expect(page.locator("[data-testid=pause]")).to_have_attribute("aria-pressed", "false")
    on_map, table = pods(page), rows(page)
    for name, p in on_map.items():
        assert (table[name]["connTotal"], table[name]["rate"], table[name]["state"]) == \
            (p["connTotal"], p["rate"], p["state"])
    browser.assert_clean(page)


# ---- 8. security ----

UI_PATHS = ("/ui", "/ui/", "/ui/static/app.js", "/ui/api/v1/services", "/ui/api/v1/overview",
            "/ui/api/v1/services/default/myapp-service/map", "/ui/api/v1/services/default/nope/map",
            "/ui/api/v1/describe/pods/default/nope", "/ui/login?token=v1.1.x.y", "/ui/static/nope.js")


def test_security_headers_methods_host_and_origin(nft):
    token = nft.api.token
    for path in UI_PATHS:
        for auth in (token, None):
            status, headers, _ = raw(nft.cluster, "GET", path, token=auth, headers={"Origin": nft.cluster.url})
            for name, value in security.HEADERS.items():
                assert headers.get(name.lower()) == [value], (path, auth is not None, status, name, headers)
            assert not [h for h in headers if h.startswith("access-control-")], (path, headers)
    status, headers, body = raw(nft.cluster, "GET", "/ui/api/v1/stream?namespace=default&service=myapp-service",
                                token=token)
    assert status == 200 and headers["content-security-policy"] == [security.CSP] and body.startswith(b"retry: 2000")
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        status, headers, _ = raw(nft.cluster, method, "/ui/api/v1/services", token=token)
        assert status == 405 and headers.get("allow") == ["GET, HEAD"], (method, status)
    status, _, _ = raw(nft.cluster, "GET", "/ui/", token=token, headers={"Host": "evil.example"})
    assert status == 403
    status, headers, _ = raw(nft.cluster, "GET", "/ui/api/v1/services", token=token,
                             headers={"Origin": "https://evil.example"})
    assert status == 403 and "access-control-allow-origin" not in headers
    browser.assert_clean(nft.page)


# ---- 9. scale ----

def test_150_pods_render_within_two_seconds_and_dots_stay_capped(userspace, nft, expect):
    k = userspace.k
    k.ok("create", "deployment", "many", "--image=pause", "--replicas=150")
    k.ok("create", "service", "clusterip", "many", "--tcp=80:80")
    try:
        wait_for(lambda: len(userspace.api.ready_endpoints("many")) == 150, timeout=150, interval=0.5,
                 what="150 pause pods Ready behind Service many")
        page = browser.open_page(userspace.context)
        took = []
        for _ in range(2):   # the best of two: the machine may be busy with other work
            goto(page, userspace.cluster.url + "/ui/#/map/default/many")
            wait_count(page, POD, 150, timeout=10000)
            took.append(page.evaluate("performance.now()"))
        assert min(took) < 2000, f"150 pods took {took} ms from navigation"
        assert page.locator(ROW).count() == 150
        per_node = page.eval_on_selector_all("[data-testid=pod-group]", "gs => gs.map(g => g.querySelectorAll("
                                             "'[data-testid=pod]').length)")
        assert sum(per_node) == 150 and len(per_node) == 3, per_node
        browser.assert_clean(page)
        page.close()
    finally:
        k.run("delete", "service", "many")
        k.run("delete", "deployment", "many", "--wait=false")
    # The dot pool under load: ≤ 30 dots an edge a tick, then "1 dot = k".
    page = nft.page
    edges = page.locator("[data-testid=edge]").count()
    most = 0
    load = threading.Thread(target=connect, args=(nft.node_ip(1), 30008, 400))
    load.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:   # during the load and the 2 ticks after it
        most = max(most, page.locator("[data-testid=dot]").count())
        page.wait_for_timeout(50)
        if not load.is_alive():
            deadline = min(deadline, time.monotonic() + 2.5)
    load.join()
    assert 0 < most <= 30 * edges, f"{most} dots on {edges} edges"
    expect(page.locator("[data-testid=dot-scale]")).to_contain_text("1 dot = ")
    browser.assert_clean(page)


# ---- 10. the picture for people ----

# The volatile bits of the picture frozen in its text: the pods' random name suffixes (a, b, c by
# node) and allocated IPs, the ClusterIP and the server's port. The rest is what the cluster drew.
FREEZE = """([pods, ips, clusterIP, url]) => {
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let t = n.nodeValue;
    pods.forEach((name, i) => { t = t.split('-' + name.slice(-5)).join('-' + 'abc'[i].repeat(5)); });
    ips.forEach((ip, i) => { t = t.split(ip + ':').join(`127.222.${i + 1}.10:`); });
    t = t.split(clusterIP).join('127.223.0.80').split(url).join('https://127.0.0.1:6443');
    if (t !== n.nodeValue) n.nodeValue = t;
  }
}"""


def test_reduced_motion_screenshot_of_the_seed(chromium, nft, expect):
    with logged_in(chromium, nft.cluster, reduced_motion="reduce") as context:
        page = open_map(context, nft.cluster)
        expect(page.locator(POD)).to_have_count(3)
        expect(page.locator("[data-testid=changes] li")).to_have_count(0)
        # Earlier tests' connections leave the server's 10 s rates up for a while: a still picture.
        page.wait_for_function("() => [...document.querySelectorAll('[data-testid=pod]')]"
                               ".every(p => +p.dataset.rate === 0)", timeout=(WINDOW + 3) * 1000)
        page.click("[data-testid=pause]")
        seed = sorted(nft.api.pods("app=myapp").items(), key=lambda kv: (kv[1]["node"], kv[0]))
        cluster_ip = nft.api.get("/api/v1/namespaces/default/services/myapp-service")["spec"]["clusterIP"]
        page.evaluate(FREEZE, [[n for n, _ in seed], [p["ip"] for _, p in seed], cluster_ip, nft.cluster.url])
        SHOT.parent.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOT), full_page=True, animations="disabled", caret="hide")
        assert SHOT.stat().st_size > 10_000
        if os.environ.get("POCKETKUBE_UPDATE_DOCS") == "1":
            shutil.copyfile(SHOT, DOCS_SHOT)
        browser.assert_clean(page)
