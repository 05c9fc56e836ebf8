"""Printers for rbac.authorization.k8s.io/v1 (upstream printers.go: printRole, printRoleBinding...):
roles show when they were created, bindings their role and, with -o wide, their subjects."""

from __future__ import annotations

from pocketkube.apiserver.tables.base import (
    AGE,
    NAME,
    Cell,
    Column,
    Printer,
    age,
    as_map,
    as_text,
    maps_in,
    name_and_created_at,
    name_of,
    wide,
)

_CREATED_AT = Column("Created At", "CreationTimestamp is a timestamp representing the server time when this "
                                   "object was created.", type="date")
_ROLE = Column("Role", "Role for this binding.")


def subjects_strings(binding: dict) -> tuple[str, str, str]:
    """Users, groups and service accounts (namespace/name) of a binding, each comma-joined."""
    users, groups, sas = [], [], []
    for s in maps_in(binding.get("subjects")):
        name = as_text(s.get("name"))
        kind = s.get("kind")
        if kind == "User":
            users.append(name)
        elif kind == "Group":
            groups.append(name)
        elif kind == "ServiceAccount":
            sas.append(f"{as_text(s.get('namespace'))}/{name}")
    return ", ".join(users), ", ".join(groups), ", ".join(sas)


def _binding_cells(binding: dict, now: float) -> list[Cell]:
    ref = as_map(binding.get("roleRef"))
    return [name_of(binding), f"{as_text(ref.get('kind'))}/{as_text(ref.get('name'))}", age(binding, now),
            *subjects_strings(binding)]


_ROLE_PRINTER = Printer((NAME, _CREATED_AT), name_and_created_at)
_BINDING_PRINTER = Printer((NAME, _ROLE, AGE, wide("Users", "Users in the roleBinding."),
                            wide("Groups", "Groups in the roleBinding."),
                            wide("ServiceAccounts", "ServiceAccounts in the roleBinding.")), _binding_cells)

PRINTERS: dict[tuple[str, str], Printer] = {
    ("rbac.authorization.k8s.io", "roles"): _ROLE_PRINTER,
    ("rbac.authorization.k8s.io", "clusterroles"): _ROLE_PRINTER,
    ("rbac.authorization.k8s.io", "rolebindings"): _BINDING_PRINTER,
    ("rbac.authorization.k8s.io", "clusterrolebindings"): _BINDING_PRINTER,
}
