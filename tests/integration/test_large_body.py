"""Bodies larger than one network read are read whole (a 200 KB annotation is valid)."""

from apiclient import PODS, pod


def test_large_valid_body_is_accepted(api):
    body = pod("big-annotation")
    body["metadata"]["annotations"] = {"note": "x" * 200_000}
    reply = api.post(PODS, body)
    assert reply.status == 201, reply.body[:300]
    assert api.get(f"{PODS}/big-annotation").json()["metadata"]["annotations"]["note"] == "x" * 200_000
    api.request("DELETE", f"{PODS}/big-annotation")
