"""The WebSocket channel protocols of exec/attach/port-forward, the stream subresources' query
parameters, pod checks and authorization verbs: pure decisions, as upstream makes them."""

from __future__ import annotations

import base64
import json

import pytest
from multidict import MultiDict

from pocketkube.api import errors
from pocketkube.apiserver.authz import User, request_attributes
from pocketkube.apiserver.streams.handler import check_pod
from pocketkube.apiserver.streams.options import ExecOptions, parse_exec_options, parse_ports, query_bool
from pocketkube.streams import wschannel as wc

# ---- negotiation ----


def test_the_clients_most_preferred_supported_protocol_wins():
    # kubectl's order: v5 first; the Python client: v5, v4
    offer = wc.offered("v5.channel.k8s.io, v4.channel.k8s.io,v3.channel.k8s.io, v2.channel.k8s.io, channel.k8s.io")
    assert wc.negotiate(offer, wc.EXEC_PROTOCOLS) is wc.V5
    assert wc.negotiate(["v4.base64.channel.k8s.io", "v4.channel.k8s.io"], wc.EXEC_PROTOCOLS) is wc.V4_BASE64
    assert wc.negotiate(["x", "v2.channel.k8s.io"], wc.EXEC_PROTOCOLS) is wc.V2


def test_port_forward_has_no_v5_so_the_python_clients_offer_gets_v4():
    assert wc.negotiate(["v5.channel.k8s.io", "v4.channel.k8s.io"], wc.PORTFORWARD_PROTOCOLS) is wc.V4


def test_no_offer_is_the_unnamed_binary_protocol_as_from_the_kubelet():
    proto = wc.negotiate([], wc.EXEC_PROTOCOLS)
    assert proto is wc.NONE and proto.binary and not proto.status_json


def test_an_unsupported_offer_is_refused_with_upstreams_wording():
    with pytest.raises(wc.NegotiationError) as err:
        wc.negotiate(["v9.channel.k8s.io"], wc.PORTFORWARD_PROTOCOLS)
    assert str(err.value) == ("requested protocol(s) are not supported: [v9.channel.k8s.io]; "
                              "supports [ v4.channel.k8s.io v4.base64.channel.k8s.io]")


# ---- framing ----


def test_binary_messages_lead_with_the_channel_byte():
    assert wc.encode(wc.V5, 1, b"hi") == b"\x01hi"
    assert wc.decode(wc.V5, b"\x00abc") == (0, b"abc")


def test_base64_messages_are_text_with_an_ascii_channel_digit():
    assert wc.encode(wc.V4_BASE64, 2, b"oops") == "2" + base64.b64encode(b"oops").decode()
    assert wc.decode(wc.V4_BASE64, "0" + base64.b64encode(b"foo\n").decode()) == (0, b"foo\n")
    assert wc.decode(wc.V4_BASE64, "0!!not base64") is None


def test_v5_close_signal_only_in_v5():
    assert wc.decode(wc.V5, bytes([255, 0])) == (wc.CLOSE, b"\x00")
    assert wc.decode(wc.V4, bytes([255, 0])) == (255, b"\x00")  # just an unknown channel before v5
    assert wc.decode(wc.V5, bytes([255])) is None
    assert wc.decode(wc.V5, b"") is None


def test_error_channel_carries_json_from_v4_and_the_message_before():
    failure = json.dumps({"metadata": {}, "status": "Failure", "message": "command terminated with non-zero exit "
                          "code: exit status 3", "reason": "NonZeroExitCode"}).encode()
    success = b'{"metadata":{},"status":"Success"}'
    assert wc.error_payload(wc.V4, failure) == failure
    assert wc.error_payload(wc.V5, success) == success
    assert wc.error_payload(wc.V1, failure) == b"command terminated with non-zero exit code: exit status 3"
    assert wc.error_payload(wc.V2, success) is None


def test_port_forward_channels_open_with_the_port_little_endian():
    assert wc.port_prefix(8080) == bytes([0x90, 0x1F])


# ---- query parameters ----


def q(**kw) -> MultiDict:
    md: MultiDict = MultiDict()
    for k, v in kw.items():
        for item in v if isinstance(v, list) else [v]:
            md.add(k, item)
    return md


def test_booleans_read_as_the_apis_conversion_does():
    assert [query_bool([v]) for v in ("true", "True", "1", "", "yes")] == [True] * 5
    assert [query_bool(v) for v in (["false"], ["False"], ["0"], [])] == [False] * 4


def test_exec_options_keep_the_repeated_command():
    opts = parse_exec_options(q(command=["sh", "-c", "exit 3"], stdout="true", stderr="1"), attach=False)
    assert opts == ExecOptions(("sh", "-c", "exit 3"), stdin=False, stdout=True, stderr=True)


def test_a_terminal_has_no_stderr():
    opts = parse_exec_options(q(command="sh", stdin="true", stdout="true", stderr="true", tty="true"), attach=False)
    assert opts.tty and not opts.stderr


def test_at_least_one_stream_is_required():
    with pytest.raises(errors.BadRequest, match="^you must specify at least 1 of stdin, stdout, stderr$"):
        parse_exec_options(q(command="ls", stdout="false"), attach=False)


def test_exec_needs_a_command_attach_does_not():
    with pytest.raises(errors.BadRequest, match="at least one command"):
        parse_exec_options(q(stdout="true"), attach=False)
    assert parse_exec_options(q(stdout="true", command="ignored"), attach=True).command == ()


def test_ports_repeated_or_comma_separated():
    assert parse_ports(q(ports="80,8080")) == [80, 8080]
    assert parse_ports(q(port=["80", "81"])) == [80, 81]


@pytest.mark.parametrize(("query", "message"), [
    ({}, 'query parameter "port" is required'),
    ({"ports": ""}, 'query parameter "port" cannot be empty'),
    ({"ports": "http"}, 'unable to parse "http" as a port'),
    ({"ports": "70000"}, 'unable to parse "70000" as a port'),
    ({"ports": "0"}, 'port "0" must be > 0'),
])
def test_bad_ports_are_bad_requests(query, message):
    with pytest.raises(errors.BadRequest, match=message):
        parse_ports(q(**query))


# ---- the pod ----


def pod(phase: str | None = "Running", node: str | None = "n1") -> dict:
    spec = {"containers": [{"name": "app"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": "web"}, "spec": spec, "status": {"phase": phase} if phase else {}}


def test_an_unscheduled_pod_has_no_host():
    with pytest.raises(errors.BadRequest, match="^pod web does not have a host assigned$"):
        check_pod(pod(node=None), "exec")


@pytest.mark.parametrize(("kind", "verb"), [("exec", "exec into"), ("attach", "attach to")])
def test_a_completed_pod_cannot_be_entered(kind, verb):
    with pytest.raises(errors.BadRequest) as err:
        check_pod(pod("Succeeded"), kind)
    assert err.value.message == f"cannot {verb} a container in a completed pod; current phase is Succeeded"


def test_port_forward_needs_a_running_pod():
    with pytest.raises(errors.BadRequest, match="^unable to forward port because pod is not running. "
                                                "Current status=Pending$"):
        check_pod(pod("Pending"), "portforward")
    check_pod(pod("Running"), "portforward")
    check_pod(pod("Pending"), "exec")  # the agent answers for a container not started yet


# ---- authorization attributes ----


@pytest.mark.parametrize("sub", ["exec", "attach", "portforward"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_streams_need_create_even_over_a_get_websocket(method, sub):
    a = request_attributes(User("u", ()), method, f"/api/v1/namespaces/ns/pods/x/{sub}", False)
    assert (a.verb, a.resource, a.subresource, a.namespace, a.name) == ("create", "pods", sub, "ns", "x")


def test_other_pod_reads_stay_get():
    assert request_attributes(User("u", ()), "GET", "/api/v1/namespaces/ns/pods/x/log", False).verb == "get"
    assert request_attributes(User("u", ()), "GET", "/api/v1/namespaces/ns/pods/x", False).verb == "get"


def test_streams_are_long_running():
    from aiohttp.test_utils import make_mocked_request

    from pocketkube.apiserver.flowcontrol import is_long_running

    for method in ("GET", "POST"):
        assert is_long_running(make_mocked_request(method, "/api/v1/namespaces/ns/pods/x/exec?command=ls"))
    assert not is_long_running(make_mocked_request("GET", "/api/v1/namespaces/ns/pods/x"))


def test_bootstrap_roles_grant_streams_to_edit_not_view():
    from pocketkube.apiserver.rbac.policy import cluster_roles

    roles = {r["metadata"]["name"]: r for r in cluster_roles()}

    def grants(role: str, verb: str, resource: str) -> bool:
        return any(("*" in r["verbs"] or verb in r["verbs"]) and resource in r.get("resources", [])
                   for r in roles[role]["rules"])
    for sub in ("pods/exec", "pods/attach", "pods/portforward"):
        assert grants("system:aggregate-to-edit", "create", sub)
        assert not grants("system:aggregate-to-view", "create", sub)
        assert not grants("system:aggregate-to-view", "get", sub)


def test_streams_are_counted_as_connect():
    from aiohttp.test_utils import make_mocked_request

    from pocketkube.apiserver.metrics import _labels

    assert _labels(make_mocked_request("GET", "/api/v1/namespaces/ns/pods/x/exec?command=ls")) == \
        ("CONNECT", "", "pods", "exec")
    assert _labels(make_mocked_request("POST", "/api/v1/namespaces/ns/pods/x/portforward")) == \
        ("CONNECT", "", "pods", "portforward")


def test_nodes_cannot_open_streams_into_pods():
    from pocketkube.apiserver.authz import NODES_GROUP, allowed
    from pocketkube.registry.rbac.index import PolicyIndex

    node = User("system:node:n1", (NODES_GROUP, "system:authenticated"))
    for sub in ("exec", "attach", "portforward"):
        a = request_attributes(node, "GET", f"/api/v1/namespaces/ns/pods/x/{sub}", False)
        assert not allowed(a, PolicyIndex())
    assert allowed(request_attributes(node, "GET", "/api/v1/namespaces/ns/pods/x", False), PolicyIndex())
