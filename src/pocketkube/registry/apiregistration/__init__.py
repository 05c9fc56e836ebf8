"""apiregistration.k8s.io: the APIService kind (k8s.io/kube-aggregator's registry)."""
