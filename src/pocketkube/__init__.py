"""pocketkube: a small, real Kubernetes in Python."""

__version__ = "0.1.0"
# The Kubernetes release whose API we serve; kubectl's dispatcher picks its binary from it.
KUBERNETES_VERSION = "v1.32.4"
