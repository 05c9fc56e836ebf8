"""RBAC in the API server: the bootstrap policy and its reconciliation, escalation prevention."""
