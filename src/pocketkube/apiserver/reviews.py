"""Access reviews answered from the authorizer, storing nothing: SelfSubjectAccessReview
(`kubectl auth can-i`), SelfSubjectRulesReview (`can-i --list`), SubjectAccessReview and
LocalSubjectAccessReview (about another user), SelfSubjectReview (`kubectl auth whoami`)."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from pocketkube.api import errors
from pocketkube.api.fields import Path, invalid
from pocketkube.apiserver.authz import Attributes, User, _mapping, allowed, rules_for
from pocketkube.registry.rbac.index import PolicyIndex

_AUTHZ = "authorization.k8s.io"
_SSAR = (_AUTHZ, "selfsubjectaccessreviews")
_SSRR = (_AUTHZ, "selfsubjectrulesreviews")
_SAR = (_AUTHZ, "subjectaccessreviews")
_LSAR = (_AUTHZ, "localsubjectaccessreviews")
_SSR = ("authentication.k8s.io", "selfsubjectreviews")
_REVIEW_KINDS = {_SSAR: "SelfSubjectAccessReview", _SSRR: "SelfSubjectRulesReview", _SAR: "SubjectAccessReview",
                 _LSAR: "LocalSubjectAccessReview", _SSR: "SelfSubjectReview"}


def _review_attributes(kind: str, user: User, spec: dict) -> Attributes:
    res, non_res = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
    if (res is None) == (non_res is None):
        raise errors.Invalid(kind, "", [invalid(Path("spec", "resourceAttributes"), res, "exactly one of "
                                                "nonResourceAttributes or resourceAttributes must be specified")],
                             _AUTHZ)
    if non_res is not None:
        if not isinstance(non_res, dict):
            raise errors.BadRequest("spec.nonResourceAttributes must be an object")
        return Attributes(user, str(non_res.get("verb") or ""), path=str(non_res.get("path") or "/"))
    if not isinstance(res, dict):
        raise errors.BadRequest("spec.resourceAttributes must be an object")
    return Attributes(user, str(res.get("verb") or ""), str(res.get("group") or ""), str(res.get("resource") or ""),
                      str(res.get("subresource") or ""), str(res.get("namespace") or ""), str(res.get("name") or ""))


def rules_status(user: User, namespace: str, policy: PolicyIndex) -> dict:
    """A SelfSubjectRulesReview's status: the rules the user holds in `namespace`."""
    resource_rules, url_rules = [], []
    for r in rules_for(user, namespace, policy):
        if r.urls:
            url_rules.append({"verbs": list(r.verbs), "nonResourceURLs": list(r.urls)})
        else:
            rule = {"verbs": list(r.verbs), "apiGroups": list(r.api_groups), "resources": list(r.resources)}
            if r.resource_names:
                rule["resourceNames"] = list(r.resource_names)
            resource_rules.append(rule)
    return {"resourceRules": resource_rules, "nonResourceRules": url_rules, "incomplete": False}


def _review_answer(kind: str, group: str, spec: dict, status: dict, namespace: str = "") -> web.Response:
    meta: dict[str, Any] = {"creationTimestamp": None}
    if namespace:
        meta["namespace"] = namespace
    body = {"kind": kind, "apiVersion": f"{group}/v1", "metadata": meta}
    if spec:
        body["spec"] = spec
    body["status"] = status
    return web.Response(body=orjson.dumps(body), status=201, content_type="application/json")


def _subject(kind: str, spec: dict) -> User:
    """The user a SubjectAccessReview asks about."""
    name = spec.get("user") if isinstance(spec.get("user"), str) else ""
    groups = spec.get("groups") if isinstance(spec.get("groups"), list) else []
    if not name and not groups:
        raise errors.Invalid(kind, "", [invalid(Path("spec", "user"), name,
                                                "at least one of user or group must be specified")], _AUTHZ)
    return User(name, tuple(str(g) for g in groups))


def answer_review(kind_key: tuple[str, str], user: User, review: dict, policy: PolicyIndex,
                  namespace: str = "", info: dict | None = None) -> web.Response:
    """`info`: the uid and extra the authenticator gave the user (service-account tokens)."""
    spec = _mapping(review.get("spec"))
    kind = _REVIEW_KINDS[kind_key]
    if kind_key == _SSR:
        user_info: dict[str, Any] = {"username": user.name}
        if info and info.get("uid"):
            user_info["uid"] = info["uid"]
        user_info["groups"] = list(user.groups)
        if info and info.get("extra"):
            user_info["extra"] = info["extra"]
        return _review_answer(kind, "authentication.k8s.io", {}, {"userInfo": user_info})
    if kind_key == _SSRR:
        ns = spec.get("namespace") if isinstance(spec.get("namespace"), str) else ""
        return _review_answer(kind, _AUTHZ, spec, rules_status(user, ns, policy))
    subject = user if kind_key == _SSAR else _subject(kind, spec)
    a = _review_attributes(kind, subject, spec)
    if kind_key == _LSAR and a.is_resource_request and a.namespace != namespace:
        raise errors.Invalid(kind, "", [invalid(Path("spec", "resourceAttributes", "namespace"), a.namespace,
                                                "must match metadata.namespace")], _AUTHZ)
    return _review_answer(kind, _AUTHZ, spec, {"allowed": allowed(a, policy)}, namespace)


def review_target(a: Attributes) -> tuple[str, str] | None:
    key = (a.api_group, a.resource)
    if a.verb == "create" and key in _REVIEW_KINDS and not a.name and (key == _LSAR) == bool(a.namespace):
        return key
    return None


