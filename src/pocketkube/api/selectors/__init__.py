"""Selectors, as the apiserver and controllers use them: label selectors and field selectors.

Two grammars with two jobs, kept apart as upstream keeps pkg/labels and pkg/fields apart:

* `labels`: label selector parsing, metav1.LabelSelector, matching, printing and validation;
* `fields`: field selector parsing and the per-kind field labels the apiserver accepts.

The names callers use are re-exported here (`from pocketkube.api.selectors import LabelSelector`).
"""

from __future__ import annotations

from pocketkube.api.selectors.fields import FieldSelector
from pocketkube.api.selectors.labels import (
    LabelSelector,
    Requirement,
    selector_to_string,
    validate_label_selector,
)

__all__ = ["FieldSelector", "LabelSelector", "Requirement", "selector_to_string", "validate_label_selector"]
