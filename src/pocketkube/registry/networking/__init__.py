"""networking.k8s.io: Ingress and IngressClass."""
