"""The pods/eviction subresource (upstream's EvictionREST, pkg/registry/core/pod/storage/
eviction.go): a pod is deleted gracefully unless the one PodDisruptionBudget selecting it allows
no disruption now (429 with a DisruptionBudget cause). An allowed eviction is charged to the
budget first (disruptionsAllowed - 1, the pod recorded in disruptedPods) in one read-modify-write,
so concurrent evictions cannot overdraw it; the disruption controller recomputes it afterwards."""

from __future__ import annotations

from pocketkube.api import errors
from pocketkube.api.selectors.labels import LabelSelector
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.registry.store import ObjectStore

SUCCESS = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
VIOLATION = "Cannot evict pod as it would violate the pod's disruption budget."
MAX_DISRUPTED_PODS = 2000


def is_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [] if isinstance(c, dict))


def can_ignore_budget(pod: dict) -> bool:
    """Pods that are done, not started, or already going need no budget (canIgnorePDB)."""
    phase = (pod.get("status") or {}).get("phase")
    return phase in ("Succeeded", "Failed", "Pending") or bool(pod["metadata"].get("deletionTimestamp"))


def selects(pdb: dict, pod: dict) -> bool:
    try:
        selector = LabelSelector.from_dict((pdb.get("spec") or {}).get("selector"))
    except ValueError:
        return False
    return not selector.empty and selector.matches(pod["metadata"].get("labels") or {})


def too_many_requests(pdb_name: str, message: str) -> errors.ApiError:
    err = errors.TooManyRequests(VIOLATION)
    err.details = {"causes": [{"reason": "DisruptionBudget", "message": message}]}
    err.headers = {}
    return err


def charge(pdb: dict, pod_name: str) -> dict:
    """The budget after one more disruption (checkAndDecrement); 429/403 when it allows none."""
    status = pdb.setdefault("status", {})
    name = pdb["metadata"]["name"]
    if int(status.get("observedGeneration") or 0) < int(pdb["metadata"].get("generation") or 0):
        raise too_many_requests(name, f"The disruption budget {name} is still being processed by the server.")
    allowed = int(status.get("disruptionsAllowed") or 0)
    if allowed < 0:
        raise errors.Forbidden("pdb disruptions allowed is negative")
    disrupted = dict(status.get("disruptedPods") or {})
    if len(disrupted) > MAX_DISRUPTED_PODS:
        raise errors.Forbidden("DisruptedPods map too big - too many evictions not confirmed by PDB controller")
    if allowed == 0:
        raise too_many_requests(name, f"The disruption budget {name} needs {int(status.get('desiredHealthy') or 0)} "
                                      f"healthy pods and has {int(status.get('currentHealthy') or 0)} currently")
    status["disruptionsAllowed"] = allowed - 1
    disrupted[pod_name] = now_rfc3339()
    status["disruptedPods"] = disrupted
    if allowed - 1 == 0:
        conditions = [c for c in status.get("conditions") or [] if c.get("type") != "DisruptionAllowed"]
        conditions.append({"type": "DisruptionAllowed", "status": "False", "reason": "InsufficientPods",
                           "message": "", "observedGeneration": status.get("observedGeneration", 0),
                           "lastTransitionTime": now_rfc3339()})
        status["conditions"] = conditions
    return pdb


def _unhealthy_may_go(pdb: dict, pod: dict) -> bool:
    """A pod that is not Ready goes without charging the budget when its policy says so
    (AlwaysAllow, or IfHealthyBudget while the budget is met)."""
    if is_ready(pod):
        return False
    status = pdb.get("status") or {}
    if (pdb.get("spec") or {}).get("unhealthyPodEvictionPolicy") == "AlwaysAllow":
        return True
    return int(status.get("currentHealthy") or 0) >= int(status.get("desiredHealthy") or 0) \
        and int(status.get("observedGeneration") or 0) >= int(pdb["metadata"].get("generation") or 0)


async def evict(pods: ObjectStore, pdbs: ObjectStore, namespace: str, name: str, body: dict,
                dry_run: bool = False) -> dict:
    """POST pods/{name}/eviction; the Status to answer with (201)."""
    meta = body.get("metadata") if isinstance(body.get("metadata"), dict) else {}
    if meta.get("name") not in (None, "", name):
        raise errors.BadRequest(f"name in URL does not match name in Eviction object: {name} vs {meta['name']}")
    opts = body.get("deleteOptions") if isinstance(body.get("deleteOptions"), dict) else {}
    grace = opts.get("gracePeriodSeconds")
    if grace is not None and (not isinstance(grace, int) or isinstance(grace, bool)):
        raise errors.BadRequest("deleteOptions.gracePeriodSeconds must be an integer")
    dry_run = dry_run or bool(opts.get("dryRun"))
    pod = pods.get(namespace, name)
    if not can_ignore_budget(pod):
        budgets = [p for p in pdbs.list_objects(namespace) if selects(p, pod)]
        if len(budgets) > 1:
            raise errors.InternalError("This pod has more than one PodDisruptionBudget, which the eviction "
                                       "subresource does not support.")
        if budgets and not _unhealthy_may_go(budgets[0], pod):
            pdb_name = budgets[0]["metadata"]["name"]
            if dry_run:
                charge(budgets[0], name)
            else:
                await pdbs.guaranteed_update(namespace, pdb_name, lambda b: charge(b, name), subresource="status")
    await pods.delete(namespace, name, grace_period=grace, preconditions=opts.get("preconditions"),
                      dry_run=dry_run, propagation=opts.get("propagationPolicy"))
    return SUCCESS
