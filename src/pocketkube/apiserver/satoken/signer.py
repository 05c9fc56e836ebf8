"""The token issuer: the PKI's service-account key, the issuer URL and the API's audiences."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePrivateKey, EllipticCurvePublicKey

from pocketkube.apiserver.satoken import API_AUDIENCES, ISSUER
from pocketkube.apiserver.satoken import claims as c

# A pod-bound token asked for with this lifetime (the kubelet's projected volume of the
# ServiceAccount admission) is valid for a year but marked to warn after the asked time
# (upstream's WarnOnlyBoundTokenExpirationSeconds and ExpirationExtensionSeconds,
# kube-apiserver --service-account-extend-token-expiration, on by default).
WARN_ONLY_EXPIRATION_SECONDS = 3607
EXTENDED_EXPIRATION_SECONDS = 365 * 24 * 3600


@dataclass
class Signer:
    key: EllipticCurvePrivateKey
    issuer: str = ISSUER
    audiences: tuple[str, ...] = API_AUDIENCES
    # kube-apiserver --service-account-max-token-expiration; 0: no cap but validation's 2^32 s.
    max_expiration_seconds: int = 0
    extend_expiration: bool = True

    @classmethod
    def from_file(cls, key_path: Path, **kw) -> Signer:
        key = serialization.load_pem_private_key(Path(key_path).read_bytes(), None)
        if not isinstance(key, EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: the service-account signing key must be an EC (P-256) key")
        return cls(key, **kw)

    @property
    def public_key(self) -> EllipticCurvePublicKey:
        return self.key.public_key()

    def issue(self, claims: dict) -> str:
        return c.sign(claims, self.key)
