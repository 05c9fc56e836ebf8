"""Service-account tokens: bound JWTs as Kubernetes issues and checks them.

- claims.py: the claims of a token (pure) and their checks against the signing key, issuer,
  audiences and time (pkg/serviceaccount/claims.go and jwt.go);
- signer.py: the signing key of the data dir's PKI, and issuing a token;
- authenticator.py: a bearer JWT → the service account's user, after looking the bound objects
  up through the registry (the ServiceAccount, and the Pod, Secret or Node it is bound to);
- tokenrequest.py: the serviceaccounts/token subresource (TokenRequest) and TokenReview.
"""

ISSUER = "https://kubernetes.default.svc.cluster.local"
# kube-apiserver's --api-audiences default to the issuer: tokens for the API carry it as `aud`.
API_AUDIENCES = (ISSUER,)
