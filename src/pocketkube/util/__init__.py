"""Leaf helpers with no Kubernetes meaning; they import nothing else of pocketkube."""
