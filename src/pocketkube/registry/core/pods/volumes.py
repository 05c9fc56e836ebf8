"""Pod volumes and volumeMounts, validated with upstream's wording (pkg/apis/core/validation:
validateVolumes, validateVolumeSource, ValidateVolumeMounts)."""

from __future__ import annotations

from typing import Any

from pocketkube.api.fields import FieldError, Path, forbidden, invalid, not_found, required
from pocketkube.api.quantity import parse as parse_quantity
from pocketkube.api.validation import dns1123_subdomain_errors, wrong_type
from pocketkube.registry.core.pods.typed import (
    QUANTITY_MSG,
    dict_items,
    get_bool,
    get_dict,
    get_int,
    get_list,
    not_a_string,
    not_supported_ordered,
    required_str,
    unique_label_name,
)
from pocketkube.registry.validation import get_str

# Every volume source upstream knows (the kubelet here sets up the first seven).
SOURCES = ("emptyDir", "configMap", "secret", "downwardAPI", "projected", "hostPath", "persistentVolumeClaim",
           "nfs", "iscsi", "glusterfs", "rbd", "cephfs", "cinder", "fc", "flocker", "flexVolume", "azureFile",
           "vsphereVolume", "quobyte", "azureDisk", "photonPersistentDisk", "portworxVolume", "scaleIO",
           "storageos", "csi", "ephemeral", "image", "gcePersistentDisk", "awsElasticBlockStore", "gitRepo")
HOST_PATH_TYPES = ["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket", "CharDevice",
                   "BlockDevice"]
FILE_MODE_MSG = "must be a number between 0 and 0777 (octal), both inclusive"
# Downward API volume files may name only the pod's own metadata (validVolumeDownwardAPIFieldPathExpressions).
VOLUME_FIELD_PATHS = ["metadata.annotations", "metadata.labels", "metadata.name", "metadata.namespace",
                      "metadata.uid"]
PROJECTIONS = ("secret", "configMap", "downwardAPI", "serviceAccountToken", "clusterTrustBundle",
               "podCertificate")
MIN_TOKEN_SECONDS = 600
MAX_TOKEN_SECONDS = 1 << 32


def descending_path_errors(value: str, path: Path) -> list[FieldError]:
    """validateLocalDescendingPath: relative, no `..` element."""
    errs = []
    if value.startswith("/"):
        errs.append(invalid(path, value, "must be a relative path"))
    if ".." in value.replace("\\", "/").split("/"):
        errs.append(invalid(path, value, "must not contain '..'"))
    return errs


def _file_mode(parent: dict, key: str, path: Path, errs: list[FieldError]) -> None:
    mode = get_int(parent, key, path, errs)
    if mode is not None and not 0 <= mode <= 0o777:
        errs.append(invalid(path.child(key), mode, FILE_MODE_MSG))


def _items(items: list, path: Path, errs: list[FieldError]) -> set[str]:
    """validateKeyToPath for each item; the paths, for projected volumes' duplicate check."""
    paths = set()
    for i, item in dict_items(items, path, errs):
        ipath = path.index(i)
        required_str(item, "key", ipath, errs)
        paths.add(_local_path(item, ipath, errs))
        _file_mode(item, "mode", ipath, errs)
    return paths


def _local_path(item: dict, ipath: Path, errs: list[FieldError]) -> str:
    """validateLocalNonReservedPath of item.path."""
    value = required_str(item, "path", ipath, errs)
    if not value:
        return ""
    errs.extend(descending_path_errors(value, ipath.child("path")))
    if value.startswith(".."):
        errs.append(invalid(ipath.child("path"), value, "must not start with '..'"))
    return value


def _downward_items(items: list, path: Path, errs: list[FieldError]) -> set[str]:
    paths = set()
    for i, item in dict_items(items, path, errs):
        ipath = path.index(i)
        paths.add(_local_path(item, ipath, errs))
        _file_mode(item, "mode", ipath, errs)
        field_ref = get_dict(item, "fieldRef", ipath, errs)
        resource_ref = get_dict(item, "resourceFieldRef", ipath, errs)
        if field_ref and resource_ref:
            errs.append(invalid(ipath, "resource", "fieldRef and resourceFieldRef can not be specified simultaneously"))
        elif field_ref:
            fp = get_str(field_ref, "fieldPath", ipath.child("fieldRef"), errs)
            base = fp.split("[", 1)[0]
            if not fp:
                errs.append(required(ipath.child("fieldRef", "fieldPath")))
            elif base not in VOLUME_FIELD_PATHS:
                errs.append(not_supported_ordered(ipath.child("fieldRef", "fieldPath"), fp, VOLUME_FIELD_PATHS))
        elif resource_ref:
            if not get_str(resource_ref, "containerName", ipath.child("resourceFieldRef"), errs):
                errs.append(required(ipath.child("resourceFieldRef", "containerName")))
            if not get_str(resource_ref, "resource", ipath.child("resourceFieldRef"), errs):
                errs.append(required(ipath.child("resourceFieldRef", "resource")))
        else:
            errs.append(required(ipath, "one of fieldRef and resourceFieldRef is required"))
    return paths


def _named(source: dict, key: str, path: Path, errs: list[FieldError]) -> None:
    name = required_str(source, key, path, errs)
    if name:
        errs.extend(invalid(path.child(key), name, m) for m in dns1123_subdomain_errors(name))


def _projected(source: dict, path: Path, errs: list[FieldError]) -> None:
    _file_mode(source, "defaultMode", path, errs)
    seen: set[str] = set()
    for i, proj in dict_items(get_list(source, "sources", path, errs), path.child("sources"), errs):
        ppath = path.child("sources").index(i)
        kinds = [k for k in PROJECTIONS if proj.get(k) is not None]
        if not kinds:
            errs.append(required(ppath, "must specify exactly 1 of: " + ", ".join(PROJECTIONS[:5])))
        for extra in kinds[1:]:
            errs.append(forbidden(ppath.child(extra), "may not specify more than 1 volume type per source"))
        paths: set[str] = set()
        for kind in kinds[:1]:
            src = get_dict(proj, kind, ppath, errs)
            spath = ppath.child(kind)
            if kind in ("secret", "configMap"):
                paths = _items(get_list(src, "items", spath, errs), spath.child("items"), errs)
                get_bool(src, "optional", spath, errs)
            elif kind == "downwardAPI":
                paths = _downward_items(get_list(src, "items", spath, errs), spath.child("items"), errs)
            elif kind == "serviceAccountToken":
                seconds = get_int(src, "expirationSeconds", spath, errs)
                if seconds is not None and seconds < MIN_TOKEN_SECONDS:
                    errs.append(invalid(spath.child("expirationSeconds"), seconds,
                                        "may not specify a duration less than 10 minutes"))
                elif seconds is not None and seconds > MAX_TOKEN_SECONDS:
                    errs.append(invalid(spath.child("expirationSeconds"), seconds,
                                        "may not specify a duration larger than 2^32 seconds"))
                paths = {_local_path(src, spath, errs)}
        for p in paths - {""}:
            if p in seen:
                errs.append(invalid(ppath, p, "conflicting duplicate paths"))
            seen.add(p)


def _source(kind: str, source: Any, path: Path, errs: list[FieldError]) -> None:
    if not isinstance(source, dict):
        errs.append(wrong_type(path, source, "object"))
        return
    if kind == "hostPath":
        value = get_str(source, "path", path, errs)
        if not value and not not_a_string(source, "path"):
            errs.append(required(path.child("path")))
        elif value and ".." in value.split("/"):
            errs.append(invalid(path.child("path"), value, "must not contain '..'"))
        type_ = get_str(source, "type", path, errs)
        if type_ not in HOST_PATH_TYPES and not not_a_string(source, "type"):
            errs.append(not_supported_ordered(path.child("type"), type_, HOST_PATH_TYPES[1:]))
    elif kind == "emptyDir":
        get_str(source, "medium", path, errs)
        limit = source.get("sizeLimit")
        if limit is not None:
            q = parse_quantity(limit)
            if q is None:
                errs.append(invalid(path.child("sizeLimit"), limit, QUANTITY_MSG))
            elif q < 0:
                errs.append(forbidden(path.child("sizeLimit"), "SizeLimit field must be a valid resource quantity"))
    elif kind in ("configMap", "secret"):
        _named(source, "name" if kind == "configMap" else "secretName", path, errs)
        _file_mode(source, "defaultMode", path, errs)
        _items(get_list(source, "items", path, errs), path.child("items"), errs)
        get_bool(source, "optional", path, errs)
    elif kind == "downwardAPI":
        _file_mode(source, "defaultMode", path, errs)
        _downward_items(get_list(source, "items", path, errs), path.child("items"), errs)
    elif kind == "projected":
        _projected(source, path, errs)
    elif kind == "persistentVolumeClaim":
        required_str(source, "claimName", path, errs)
        get_bool(source, "readOnly", path, errs)


def validate_volumes(volumes: list, path: Path, errs: list[FieldError]) -> set[str]:
    """Each volume: a unique DNS label name and exactly one source; the names, for the mounts."""
    names: set[str] = set()
    for i, volume in dict_items(volumes, path, errs):
        vpath = path.index(i)
        unique_label_name(volume, vpath, names, errs)
        kinds = [k for k in SOURCES if volume.get(k) is not None]
        if not kinds:
            errs.append(required(vpath, "must specify a volume type"))
        for extra in kinds[1:]:
            errs.append(forbidden(vpath.child(extra), "may not specify more than 1 volume type"))
        if kinds:
            _source(kinds[0], volume[kinds[0]], vpath.child(kinds[0]), errs)
    return names


def validate_volume_mounts(mounts: list, volumes: set[str] | None, path: Path, errs: list[FieldError]) -> None:
    """Each mount names a volume of the pod (when `volumes` is known), at a unique mountPath, with a
    relative subPath that does not climb."""
    mount_paths: set[str] = set()
    for i, mount in dict_items(mounts, path, errs):
        mpath = path.index(i)
        name = required_str(mount, "name", mpath, errs)
        if name and volumes is not None and name not in volumes:
            errs.append(not_found(mpath.child("name"), name))
        mount_path = required_str(mount, "mountPath", mpath, errs)
        if mount_path and mount_path in mount_paths:
            errs.append(invalid(mpath.child("mountPath"), mount_path, "must be unique"))
        mount_paths.add(mount_path)
        sub = get_str(mount, "subPath", mpath, errs)
        if sub:
            errs.extend(descending_path_errors(sub, mpath.child("subPath")))
        get_bool(mount, "readOnly", mpath, errs)

