"""Image references as Docker and the kubelet read them (distribution/reference): pure functions.

`parse_reference` is strict: what the kubelet's applyDefaultImageTag rejects (InvalidImageName)
is rejected here with the same message. `parse_image` is lenient (any string gives a reference,
for labels and the process runtime's catalog). Both normalize as Docker does:
`nginx` → `docker.io/library/nginx:latest`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pocketkube.agent.runtime.interface import InvalidImageName

DEFAULT_REGISTRY = "docker.io"
LEGACY_DEFAULT_REGISTRY = "index.docker.io"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255
_DIGEST = re.compile(r"@(sha256:[0-9a-f]{64})$")

# distribution/reference's grammar (regexp.go).
_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN = rf"{_HOST}(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST_PAT = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"
_REFERENCE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST_PAT}))?$")
_IDENTIFIER = re.compile(r"^[a-f0-9]{64}$")


@dataclass(frozen=True)
class ImageRef:
    registry: str
    repository: str
    tag: str  # "latest" when neither a tag nor a digest is given
    digest: str = ""

    @property
    def name(self) -> str:
        """The short name the catalog knows (last path component): `nginx` for docker.io/library/nginx."""
        return self.repository.rsplit("/", 1)[-1]

    def normalized(self) -> str:
        """As containerd reports it: docker.io/library/nginx:latest, with @digest when there is one."""
        base = f"{self.registry}/{self.repository}"
        return base + (f":{self.tag}" if self.tag else "") + (f"@{self.digest}" if self.digest else "")


def parse_image(ref: str) -> ImageRef:
    """Any string as a reference (lenient: no validation)."""
    digest = ""
    m = _DIGEST.search(ref)
    if m:
        digest, ref = m.group(1), ref[:m.start()]
    first, _, rest = ref.partition("/")
    if rest and ("." in first or ":" in first or first == "localhost"):
        registry, path = first, rest
    else:
        registry, path = DEFAULT_REGISTRY, ref
    tag = ""
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1:]
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if not tag and not digest:
        tag = DEFAULT_TAG
    return ImageRef(registry, path, tag, digest)


def _split_domain(name: str) -> tuple[str, str]:
    """splitDockerDomain: the first component is a registry when it has a dot or a port, is
    localhost, or has capitals; docker.io's official images live under library/."""
    first, sep, rest = name.partition("/")
    if not sep or ("." not in first and ":" not in first and first != "localhost" and first.lower() == first):
        domain, remainder = DEFAULT_REGISTRY, name
    else:
        domain, remainder = first, rest
    if domain == LEGACY_DEFAULT_REGISTRY:
        domain = DEFAULT_REGISTRY
    if domain == DEFAULT_REGISTRY and "/" not in remainder:
        remainder = f"library/{remainder}"
    return domain, remainder


def reference_error(image: str) -> str | None:
    """Why `image` is not a valid reference (ParseNormalizedNamed's message), or None."""
    if _IDENTIFIER.match(image):
        return f"invalid repository name ({image}), cannot specify 64-byte hexadecimal strings"
    domain, remainder = _split_domain(image)
    remote = remainder.split(":", 1)[0]
    if remote.lower() != remote:
        return f"invalid reference format: repository name ({remote}) must be lowercase"
    full = f"{domain}/{remainder}"
    m = _REFERENCE.match(full)
    if m is None:
        return "invalid reference format"
    if len(m.group(1)) > NAME_TOTAL_LENGTH_MAX:
        return f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
    return None


def parse_reference(image: str) -> ImageRef:
    """A valid reference, normalized; InvalidImageName with the kubelet's message otherwise."""
    error = reference_error(image)
    if error is not None:
        raise InvalidImageName(f"couldn't parse image reference {go_quote(image)}: {error}")
    domain, remainder = _split_domain(image)
    m = _REFERENCE.match(f"{domain}/{remainder}")
    assert m is not None
    name, tag, digest = m.group(1), m.group(2) or "", m.group(3) or ""
    repository = name.split("/", 1)[1]
    return ImageRef(domain, repository, tag or ("" if digest else DEFAULT_TAG), digest)


def with_default_tag(image: str) -> str:
    """applyDefaultImageTag: `nginx` → `nginx:latest`; a reference with a tag or digest as is."""
    ref = parse_reference(image)
    if ref.digest or _has_tag(image):
        return image
    return f"{image}:{DEFAULT_TAG}"


def _has_tag(image: str) -> bool:
    name = image.split("@", 1)[0]
    return ":" in name.rsplit("/", 1)[-1]


_GO_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r"}


def go_quote(s: str) -> str:
    """Go's %q (strconv.Quote), as the kubelet's messages quote names."""
    out = []
    for ch in s:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif not ch.isprintable():
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 0x100 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
