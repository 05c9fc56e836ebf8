"""Service-account issuer discovery (upstream's ServiceAccountIssuerDiscovery): the OpenID
provider configuration and the key set, so that other parties (a cloud IAM, Vault) can verify
the cluster's service-account tokens without asking the API server to review them."""

from __future__ import annotations

from jwt.algorithms import ECAlgorithm

from pocketkube.apiserver.satoken import claims as c
from pocketkube.apiserver.satoken.signer import Signer

CONFIGURATION_PATH = "/.well-known/openid-configuration"
JWKS_PATH = "/openid/v1/jwks"
JWKS_CONTENT_TYPE = "application/jwk-set+json"


def openid_configuration(signer: Signer, external_url: str) -> dict:
    """`external_url`: where the API server is reached (the key set's address)."""
    return {"issuer": signer.issuer, "jwks_uri": external_url.rstrip("/") + JWKS_PATH,
            "response_types_supported": ["id_token"], "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [c.ALGORITHM]}


def jwks(signer: Signer) -> dict:
    key = ECAlgorithm.to_jwk(signer.public_key, as_dict=True)
    return {"keys": [{"use": "sig", "kty": key["kty"], "kid": c.key_id(signer.public_key), "crv": key["crv"],
                      "alg": c.ALGORITHM, "x": key["x"], "y": key["y"]}]}
