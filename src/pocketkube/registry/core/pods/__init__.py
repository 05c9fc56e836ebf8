"""Pods, in modules along upstream's lines (pkg/apis/core and pkg/registry/core/pod):

    typed.py       typed access to JSON, wrong types as FieldErrors; the port, protocol and
                   quantity checks every core kind shares
    defaults.py    defaulting, with what the admission plugins add
    validation.py  validation of pods and pod templates
    update.py      what a pod update may change
    strategy.py    the Pod strategy for the generic store (configured defaults, grace period)
    binding.py     the pods/binding subresource

This package exports the pod kind's defaulting and validation.
"""

from __future__ import annotations

from pocketkube.registry.core.pods.defaults import (
           DEFAULT_TOLERATION_SECONDS,
           default,
           default_pod_spec,
           qos_class,
)
from pocketkube.registry.core.pods.update import validate_update
from pocketkube.registry.core.pods.validation import validate, validate_pod_spec, validate_template

__all__ = ["DEFAULT_TOLERATION_SECONDS", "default", "default_pod_spec", "qos_class", "validate",
           "validate_pod_spec", "validate_template", "validate_update"]
