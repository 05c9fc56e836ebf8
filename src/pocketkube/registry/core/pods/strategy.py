"""The Pod strategy (upstream's pkg/registry/core/pod/strategy.go).

What the generic store does differently for pods: defaults carry the DefaultTolerationSeconds
setting the server was started with (configuration, not a module global); a pod bound to a
node terminates gracefully, its kubelet finishing the delete; and the `binding` update path
stores the scheduler's assignment as written (binding.py composes it), since spec.nodeName
is immutable to ordinary updates.
"""

from __future__ import annotations

from functools import partial

from pocketkube.registry.core.pods import serviceaccount
from pocketkube.registry.core.pods.defaults import DEFAULT_TOLERATION_SECONDS, default
from pocketkube.registry.core.pods.update import validate_update
from pocketkube.registry.core.pods.validation import validate
from pocketkube.registry.strategy import MAIN, Merge, Strategy, UpdatePath

# The binding is written as the registry composed it: no merge rules, no update validation
# (spec.nodeName is immutable to updates), no allocation.
BINDING = "binding"
_BINDING_UPDATE = UpdatePath(Merge.RAW, validate=False, allocates=False)


def grace_period(pod: dict, requested: int | None) -> int:
    """Only pods bound to a node and not finished terminate gracefully; the others go at once."""
    spec = pod.get("spec") or {}
    if not spec.get("nodeName"):
        return 0
    if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return 0
    if requested is None:
        requested = spec.get("terminationGracePeriodSeconds", 30)
    try:
        return max(0, int(requested))
    except (TypeError, ValueError):
        return 30


def strategy(*, default_toleration_seconds: int = DEFAULT_TOLERATION_SECONDS,
             service_accounts: serviceaccount.ServiceAccountLookup | None = None) -> Strategy:
    """`service_accounts` looks ServiceAccounts up for the admission plugin; None: no admission."""
    admit = None
    if service_accounts is not None:
        def admit(pod: dict, requested_name: str) -> None:
            serviceaccount.admit(pod, service_accounts, requested_name)
    return Strategy(default=partial(default, toleration_seconds=default_toleration_seconds), admit=admit,
                    validate=validate, validate_update=validate_update,
                    tracks_generation=True, returns_deleted_object=True, grace_period=grace_period,
                    updates={"": MAIN, BINDING: _BINDING_UPDATE})
