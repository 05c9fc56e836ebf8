"""What each kind contributes to the generic object store.

A kind module (registry/core/services.py, registry/apps/deployments.py, ...) exports three
plain functions; the generic store (registry/store.py) handles uid, generation,
resourceVersion, timestamps, status/spec separation and persistence.

    def default(obj: dict) -> None                                   # in place, static defaults
    def validate(obj: dict) -> list[FieldError]                      # full object, incl. metadata
    def validate_update(new: dict, old: dict) -> list[FieldError]    # full new object + immutability
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pocketkube.api.fields import FieldError

Defaulter = Callable[[dict], None]
Validator = Callable[[dict], list[FieldError]]
UpdateValidator = Callable[[dict, dict], list[FieldError]]


@dataclass(frozen=True)
class Strategy:
    default: Defaulter
    validate: Validator
    validate_update: UpdateValidator
    # Whether the main resource endpoint may change .status (false when a status subresource exists).
    status_via_main: bool = False
