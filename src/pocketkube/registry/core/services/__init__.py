"""Service: defaulting, validation and ClusterIP/NodePort allocation, as Kubernetes does them.

Split along upstream's own lines (pkg/apis/core/v1/defaults.go, validation.go, the service
registry's strategy.go and alloc.go):

* spec.py: constants, field paths and tolerant accessors the others share;
* defaults.py: static defaulting (SetDefaults_Service);
* validation.py: JSON type checks, then ValidateService / ValidateServiceUpdate;
* ipfamilies.py: IP parsing, the clusterIP/ipFamilies rules and family defaulting;
* strategy.py: validate/validate_update as the store calls them, and the contextual defaulting
  (normalise clusterIPs, carry allocated values over, drop fields that no longer apply);
* allocation.py: ServiceAllocator, the two ranges and their transactions;
* hooks.py: the strategy the generic store uses, with the allocator as its write hooks.

Order of use by the store (mirroring kube-apiserver): default() at decode time, then
ServiceAllocator.allocate_for_create/allocate_for_update (contextual defaults and allocation;
its errors come back alone), then validate()/validate_update(), then the write, after which the
returned Transaction is committed (or reverted when the write fails).

The registry builds the kind's strategy with strategy(); it and the other names callers use are
re-exported here.
"""

from __future__ import annotations

from pocketkube.registry.core.services.allocation import ServiceAllocator
from pocketkube.registry.core.services.defaults import default
from pocketkube.registry.core.services.hooks import AllocationHooks, strategy
from pocketkube.registry.core.services.ipfamilies import cluster_ips_related_errors, parse_ip
from pocketkube.registry.core.services.spec import (
    CLUSTER_IP,
    EXTERNAL_NAME,
    KIND,
    LOAD_BALANCER,
    NODE_PORT,
    SOURCE_RANGES_ANNOTATION,
    TOPOLOGY_HINTS_ANNOTATION,
    TOPOLOGY_MODE_ANNOTATION,
    externally_accessible,
    needs_health_check,
)
from pocketkube.registry.core.services.strategy import validate, validate_update
from pocketkube.registry.core.services.validation import type_errors

__all__ = [
    "CLUSTER_IP",
    "EXTERNAL_NAME",
    "KIND",
    "LOAD_BALANCER",
    "NODE_PORT",
    "SOURCE_RANGES_ANNOTATION",
    "TOPOLOGY_HINTS_ANNOTATION",
    "TOPOLOGY_MODE_ANNOTATION",
    "AllocationHooks",
    "ServiceAllocator",
    "cluster_ips_related_errors",
    "default",
    "externally_accessible",
    "needs_health_check",
    "parse_ip",
    "strategy",
    "type_errors",
    "validate",
    "validate_update",
]
