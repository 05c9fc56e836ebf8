"""YAML read the way Kubernetes reads it: a JSON document written in YAML syntax.

sigs.k8s.io/yaml converts YAML to JSON before decoding, so only JSON values survive: timestamps
stay strings, scalar map keys become their JSON text, and values JSON cannot hold (binary,
non-finite floats, integers beyond 64 bits) are refused with a 400. Aliases are refused outright,
since an alias bomb would expand without bound. Both create/update bodies (bodies.py) and
apply patches (patch/) decode YAML through here.
"""

from __future__ import annotations

import math
from typing import Any

import orjson
import yaml

from pocketkube.api.errors import BadRequest


class JsonCompatibleYamlLoader(yaml.SafeLoader):
    """YAML read the way Kubernetes reads it: a JSON document in YAML syntax.

    Timestamps stay strings, and aliases are refused (an alias bomb would expand without bound).
    """

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "YAML aliases are not supported",
                                              self.peek_event().start_mark)
        return super().compose_node(parent, index)


JsonCompatibleYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def as_json(value: Any) -> Any:
    """The JSON value of a YAML document; YAML-only values (binary, explicit timestamps) are refused."""
    if isinstance(value, dict):
        return {_as_json_key(k): as_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [as_json(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        raise BadRequest(f"error decoding YAML: {value} is not a JSON number")
    if isinstance(value, int) and not isinstance(value, bool) and not -2**63 <= value < 2**64:
        raise BadRequest(f"error decoding YAML: {value} does not fit in 64 bits")
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    raise BadRequest(f"error decoding YAML: a {type(value).__name__} value cannot be converted to JSON")


def _as_json_key(key: Any) -> str:
    # sigs.k8s.io/yaml turns scalar keys into their JSON text: 1 -> "1", true -> "true"
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return orjson.dumps(as_json(key)).decode()
    raise BadRequest(f"error decoding YAML: a {type(key).__name__} cannot be a map key")
