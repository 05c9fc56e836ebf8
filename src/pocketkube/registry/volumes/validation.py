"""Defaulting and validation of PersistentVolume, PersistentVolumeClaim (core/v1) and StorageClass
(storage.k8s.io/v1), worded as pkg/apis/core/validation and pkg/apis/storage/validation."""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, not_supported, required
from pocketkube.api.selectors import validate_label_selector
from pocketkube.api.timestamps import now_rfc3339
from pocketkube.api.validation import dns1123_subdomain_errors, qualified_name_errors, wrong_type
from pocketkube.api.volumes import parse_quantity
from pocketkube.registry.core.pods.typed import get_dict, get_list, not_supported_ordered
from pocketkube.registry.validation import (
    IMMUTABLE,
    get_str,
    validate_object_meta,
    validate_object_meta_update,
)

ACCESS_MODES = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
VOLUME_MODES = ["Block", "Filesystem"]
PV_RECLAIM_POLICIES = ["Delete", "Recycle", "Retain"]
SC_RECLAIM_POLICIES = ["Delete", "Retain"]
BINDING_MODES = ["Immediate", "WaitForFirstConsumer"]
NODE_SELECTOR_OPERATORS = ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]
# The volume sources a PV may name; exactly one must be set (validatePersistentVolumeSource).
PV_SOURCES = ("hostPath", "local", "nfs", "csi", "iscsi", "fc", "rbd", "cephfs", "cinder", "flexVolume",
              "azureFile", "azureDisk", "gcePersistentDisk", "awsElasticBlockStore", "glusterfs", "flocker",
              "vsphereVolume", "quobyte", "photonPersistentDisk", "portworxVolume", "scaleIO", "storageos")
HOST_PATH_TYPES = ["", "BlockDevice", "CharDevice", "Directory", "DirectoryOrCreate", "File", "FileOrCreate",
                   "Socket"]
PVC_UPDATE_FORBIDDEN = ("spec is immutable after creation except resources.requests and "
                        "volumeAttributesClassName for bound claims")
MAX_SC_PARAMETERS = 512


# ---- defaulting ----

def _spec(obj: dict) -> dict:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def default_pv(obj: dict) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
    status = obj.setdefault("status", {})
    if isinstance(status, dict) and "phase" not in status:
        status["phase"] = "Pending"
        status["lastPhaseTransitionTime"] = now_rfc3339()


def default_pvc(obj: dict) -> None:
    spec = obj.get("spec")
    if isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
    status = obj.setdefault("status", {})
    if isinstance(status, dict):
        status.setdefault("phase", "Pending")


def default_storage_class(obj: dict) -> None:
    obj.setdefault("reclaimPolicy", "Delete")
    obj.setdefault("volumeBindingMode", "Immediate")


# ---- shared pieces ----

def _access_mode_errors(spec: dict, path: Path, errs: list[FieldError], pvc: bool) -> None:
    modes = get_list(spec, "accessModes", path, errs)
    mpath = path.child("accessModes")
    if not modes and not isinstance(spec.get("accessModes"), (str, int, dict)):
        errs.append(required(mpath, "at least 1 access mode is required" if pvc else ""))
        return
    for mode in modes:
        if mode not in ACCESS_MODES:
            errs.append(not_supported(mpath, mode, ACCESS_MODES))
    if "ReadWriteOncePod" in modes and len(modes) > 1:
        errs.append(forbidden(mpath, "may not use ReadWriteOncePod with other access modes"))


def _volume_mode_errors(spec: dict, path: Path, errs: list[FieldError]) -> None:
    mode = get_str(spec, "volumeMode", path, errs)
    if mode and mode not in VOLUME_MODES:
        errs.append(not_supported(path.child("volumeMode"), mode, VOLUME_MODES))


def _class_name_errors(spec: dict, path: Path, errs: list[FieldError]) -> None:
    name = get_str(spec, "storageClassName", path, errs)
    if name:
        errs.extend(invalid(path.child("storageClassName"), name, m) for m in dns1123_subdomain_errors(name))


def _quantity_errors(value: Any, path: Path, positive: bool) -> list[FieldError]:
    q = parse_quantity(value)
    if q is None:
        return [invalid(path, value, "quantities must match the regular expression "
                                     "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")]
    if positive and q <= 0:
        return [invalid(path, value, "must be greater than zero")]
    if q < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


def node_selector_errors(selector: Any, path: Path) -> list[FieldError]:
    """ValidateNodeSelector: at least one term, each requirement with a supported operator."""
    if not isinstance(selector, dict):
        return [wrong_type(path, selector, "object")]
    errs: list[FieldError] = []
    terms = get_list(selector, "nodeSelectorTerms", path, errs)
    tpath = path.child("nodeSelectorTerms")
    if not terms and not errs:
        return [required(tpath, "must have at least one node selector term")]
    for i, term in enumerate(terms):
        if not isinstance(term, dict):
            errs.append(wrong_type(tpath.index(i), term, "object"))
            continue
        for key in ("matchExpressions", "matchFields"):
            for j, req in enumerate(get_list(term, key, tpath.index(i), errs)):
                rpath = tpath.index(i).child(key).index(j)
                if not isinstance(req, dict):
                    errs.append(wrong_type(rpath, req, "object"))
                    continue
                op = req.get("operator")
                if op not in NODE_SELECTOR_OPERATORS:
                    errs.append(not_supported_ordered(rpath.child("operator"), op, NODE_SELECTOR_OPERATORS))
                values = req.get("values") or []
                if op in ("In", "NotIn") and not values:
                    errs.append(required(rpath.child("values"),
                                         "must be specified when `operator` is 'In' or 'NotIn'"))
                elif op in ("Exists", "DoesNotExist") and values:
                    errs.append(forbidden(rpath.child("values"),
                                          "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"))
                key_name = req.get("key")
                if key == "matchExpressions":
                    errs.extend(invalid(rpath.child("key"), key_name, m) for m in qualified_name_errors(key_name))
    return errs


# ---- PersistentVolume ----

def _pv_source_errors(spec: dict, path: Path, errs: list[FieldError]) -> None:
    present = [s for s in PV_SOURCES if spec.get(s) is not None]
    if not present:
        errs.append(required(path, "must specify a volume type"))
        return
    if len(present) > 1:
        errs.append(forbidden(path.child(present[1]), "may not specify more than 1 volume type"))
    for source in present:
        spath = path.child(source)
        value = spec[source]
        if not isinstance(value, dict):
            errs.append(wrong_type(spath, value, "object"))
            continue
        if source in ("hostPath", "local"):
            p = get_str(value, "path", spath, errs)
            if not p and not isinstance(value.get("path"), (int, dict, list, bool)):
                errs.append(required(spath.child("path"), ""))
            elif p and ".." in p.split("/"):
                errs.append(invalid(spath.child("path"), p, "must not contain '..'"))
        if source == "hostPath":
            kind = value.get("type")
            if kind is not None and kind not in HOST_PATH_TYPES:
                errs.append(not_supported(spath.child("type"), kind, HOST_PATH_TYPES))
        if source == "local" and spec.get("nodeAffinity") is None:
            errs.append(required(path.child("nodeAffinity"), "Local volume requires node affinity"))


def validate_pv(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, False, dns1123_subdomain_errors)
    path = Path("spec")
    spec = get_dict(obj, "spec", Path(), errs)
    _access_mode_errors(spec, path, errs, pvc=False)
    capacity = get_dict(spec, "capacity", path, errs)
    cpath = path.child("capacity")
    if not capacity and not errs:
        errs.append(required(cpath, ""))
    elif capacity and (set(capacity) != {"storage"}):
        errs.append(not_supported(cpath, capacity, ["storage"]))
    for key, value in capacity.items():
        errs.extend(_quantity_errors(value, cpath.key(key), positive=False))
    policy = get_str(spec, "persistentVolumeReclaimPolicy", path, errs)
    if policy and policy not in PV_RECLAIM_POLICIES:
        errs.append(not_supported(path.child("persistentVolumeReclaimPolicy"), policy, PV_RECLAIM_POLICIES))
    _class_name_errors(spec, path, errs)
    _volume_mode_errors(spec, path, errs)
    _pv_source_errors(spec, path, errs)
    affinity = spec.get("nodeAffinity")
    if affinity is not None:
        apath = path.child("nodeAffinity")
        if not isinstance(affinity, dict):
            errs.append(wrong_type(apath, affinity, "object"))
        elif affinity.get("required") is None:
            errs.append(required(apath.child("required"), "must specify required node constraints"))
        else:
            errs.extend(node_selector_errors(affinity["required"], apath.child("required")))
    ref = spec.get("claimRef")
    if ref is not None and not isinstance(ref, dict):
        errs.append(wrong_type(path.child("claimRef"), ref, "object"))
    return errs


def validate_pv_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_pv(new) + validate_object_meta_update(new, old)
    ns, os_ = _spec(new), _spec(old)
    for source in PV_SOURCES:
        if os_.get(source) is not None and ns.get(source) != os_.get(source):
            errs.append(forbidden(Path("spec", "persistentvolumesource"),
                                  "spec.persistentvolumesource is forbidden to be changed"))
            break
    if ns.get("volumeMode") != os_.get("volumeMode"):
        errs.append(invalid(Path("spec", "volumeMode"), ns.get("volumeMode"), IMMUTABLE))
    if os_.get("nodeAffinity") is not None and ns.get("nodeAffinity") != os_.get("nodeAffinity"):
        errs.append(invalid(Path("spec", "nodeAffinity"), ns.get("nodeAffinity"), IMMUTABLE))
    return errs


# ---- PersistentVolumeClaim ----

def validate_pvc(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, True, dns1123_subdomain_errors)
    path = Path("spec")
    spec = get_dict(obj, "spec", Path(), errs)
    _access_mode_errors(spec, path, errs, pvc=True)
    if spec.get("selector") is not None:
        errs.extend(validate_label_selector(spec["selector"], path.child("selector")))
    resources = get_dict(spec, "resources", path, errs)
    rpath = path.child("resources")
    requests = get_dict(resources, "requests", rpath, errs)
    if "storage" not in requests:
        errs.append(required(rpath.key("storage"), ""))
    else:
        errs.extend(_quantity_errors(requests["storage"], rpath.child("requests").key("storage"), positive=True))
    limits = get_dict(resources, "limits", rpath, errs)
    if "storage" in limits:
        errs.extend(_quantity_errors(limits["storage"], rpath.child("limits").key("storage"), positive=False))
    _class_name_errors(spec, path, errs)
    _volume_mode_errors(spec, path, errs)
    name = get_str(spec, "volumeName", path, errs)
    if name:
        errs.extend(invalid(path.child("volumeName"), name, m) for m in dns1123_subdomain_errors(name))
    return errs


def _request(obj: dict) -> Any:
    return ((_spec(obj).get("resources") or {}).get("requests") or {}).get("storage") \
        if isinstance(_spec(obj).get("resources"), dict) else None


def resized(new: dict, old: dict) -> bool:
    """Whether the update changes the storage request (the only spec change of a bound claim)."""
    return parse_quantity(_request(new)) != parse_quantity(_request(old))


def validate_pvc_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_pvc(new) + validate_object_meta_update(new, old)
    if errs:
        return errs
    ns, os_ = dict(_spec(new)), dict(_spec(old))
    # Binding fills volumeName once; a bound claim may change its storage request.
    if not os_.get("volumeName") and ns.get("volumeName"):
        os_["volumeName"] = ns["volumeName"]
    if os_.get("storageClassName") is None and ns.get("storageClassName") is not None:
        os_["storageClassName"] = ns["storageClassName"]
    bound = (old.get("status") or {}).get("phase") == "Bound" if isinstance(old.get("status"), dict) else False
    new_req, old_req = parse_quantity(_request(new)), parse_quantity(_request(old))
    if bound:
        for s in (ns, os_):
            s["resources"] = {**(s.get("resources") or {}), "requests": {
                k: v for k, v in ((s.get("resources") or {}).get("requests") or {}).items() if k != "storage"}}
            s.pop("volumeAttributesClassName", None)
    if ns != os_:
        return [forbidden(Path("spec"), PVC_UPDATE_FORBIDDEN)]
    if bound and new_req is not None and old_req is not None and new_req < old_req:
        errs.append(forbidden(Path("spec", "resources", "requests", "storage"),
                              "field can not be less than previous value"))
    return errs


# ---- StorageClass ----

def validate_storage_class(obj: dict) -> list[FieldError]:
    errs = validate_object_meta(obj, False, dns1123_subdomain_errors)
    root = Path()
    provisioner = get_str(obj, "provisioner", root, errs)
    if not provisioner and not isinstance(obj.get("provisioner"), (int, dict, list, bool)):
        errs.append(required(Path("provisioner"), ""))
    elif provisioner:
        errs.extend(invalid(Path("provisioner"), provisioner, m)
                    for m in qualified_name_errors(provisioner.lower()))
    params = get_dict(obj, "parameters", root, errs)
    if len(params) > MAX_SC_PARAMETERS:
        errs.append(FieldError("TooMany", "parameters", len(params), f"must have at most {MAX_SC_PARAMETERS} items"))
    if any(not k for k in params):
        errs.append(invalid(Path("parameters"), params, "key may not be empty"))
    policy = get_str(obj, "reclaimPolicy", root, errs)
    if policy and policy not in SC_RECLAIM_POLICIES:
        errs.append(not_supported(Path("reclaimPolicy"), policy, SC_RECLAIM_POLICIES))
    mode = get_str(obj, "volumeBindingMode", root, errs)
    if not mode:
        errs.append(required(Path("volumeBindingMode"), ""))
    elif mode not in BINDING_MODES:
        errs.append(not_supported(Path("volumeBindingMode"), mode, BINDING_MODES))
    expansion = obj.get("allowVolumeExpansion")
    if expansion is not None and not isinstance(expansion, bool):
        errs.append(wrong_type(Path("allowVolumeExpansion"), expansion, "boolean"))
    return errs


def validate_storage_class_update(new: dict, old: dict) -> list[FieldError]:
    errs = validate_storage_class(new) + validate_object_meta_update(new, old)
    if new.get("parameters") != old.get("parameters"):
        errs.append(forbidden(Path("parameters"), "updates to parameters are forbidden."))
    if new.get("provisioner") != old.get("provisioner"):
        errs.append(forbidden(Path("provisioner"), "updates to provisioner are forbidden."))
    if new.get("reclaimPolicy") != old.get("reclaimPolicy"):
        errs.append(forbidden(Path("reclaimPolicy"), "updates to reclaimPolicy are forbidden."))
    if new.get("volumeBindingMode") != old.get("volumeBindingMode"):
        errs.append(invalid(Path("volumeBindingMode"), new.get("volumeBindingMode"), IMMUTABLE))
    return errs
