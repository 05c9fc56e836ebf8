"""/metrics counts requests under kube-apiserver's names, LIST and WATCH apart from GET."""


def test_request_counter_tells_list_from_get(api):
    api.get("/api/v1/namespaces/default/services")
    api.get("/api/v1/namespaces/default/services/kubernetes")
    reply = api.get("/metrics")
    assert reply.status == 200
    text = reply.body.decode()
    assert 'apiserver_request_total{code="200",group="",resource="services",subresource="",verb="LIST"}' in text
    assert 'apiserver_request_total{code="200",group="",resource="services",subresource="",verb="GET"}' in text
    assert "apiserver_request_duration_seconds_bucket" in text
