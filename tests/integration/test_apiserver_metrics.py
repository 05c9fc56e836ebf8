"""/metrics counts requests under kube-apiserver's names, LIST and WATCH apart from GET."""

import time

from pocketkube.testing.waits import wait_for


def test_request_counter_tells_list_from_get(api):
    api.get("/api/v1/namespaces/default/services")
    api.get("/api/v1/namespaces/default/services/kubernetes")
    reply = api.get("/metrics")
    assert reply.status == 200
    text = reply.body.decode()
    assert 'apiserver_request_total{code="200",group="",resource="services",subresource="",verb="LIST"}' in text
    assert 'apiserver_request_total{code="200",group="",resource="services",subresource="",verb="GET"}' in text
    assert "apiserver_request_duration_seconds_bucket" in text


def _open_watches(api, resource: str) -> float:
    prefix = f'apiserver_longrunning_requests{{group="",resource="{resource}",subresource="",verb="WATCH"}} '
    for line in api.get("/metrics").body.decode().splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return 0.0


def _settled_open_watches(api, resource: str) -> float:
    """The gauge once the server's own controllers have opened their watches (they start theirs
    right after the server answers, so a reading taken too early races with them)."""
    readings = [_open_watches(api, resource)]

    def steady() -> bool:
        time.sleep(0.3)
        readings.append(_open_watches(api, resource))
        return readings[-1] == readings[-2] == readings[-3] if len(readings) > 2 else False
    wait_for(steady, timeout=15, interval=0, what=f"a steady count of {resource} watches")
    return readings[-1]


def test_open_watches_are_a_gauge_that_falls_when_they_end(api):
    """A watch is counted while it is open, not only when it ends, so clients can be seen coming back."""
    before = _settled_open_watches(api, "services")
    seen: list[float] = []
    events = api.watch("/api/v1/namespaces/default/services?watch=1&timeoutSeconds=1",
                       on_open=lambda: seen.append(_open_watches(api, "services")))
    for _ in events:  # the synthetic ADDED events, until the server ends the stream after 1 s
        pass
    assert seen == [before + 1]
    assert _open_watches(api, "services") == before
