"""Message schemas of the objects a protobuf request body may hold, after k8s.io/api's
generated.proto: field numbers, JSON names, kinds, and Go's omitempty rules (`keep_zero`).

Only the messages kubectl's generator commands send are described; SCHEMAS is fixed here at
import and no other module adds to it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from pocketkube.apiserver.protobuf.wire import VARINT


class Kind(enum.Enum):
    STRING = "string"
    INT = "int"
    BOOL = "bool"
    MESSAGE = "message"
    INLINE = "inline"            # embedded Go struct: its fields are merged into the parent
    STRING_MAP = "map<string,string>"
    QUANTITY_MAP = "map<string,Quantity>"
    INT_OR_STRING = "IntOrString"
    QUANTITY = "Quantity"
    TIME = "Time"
    FIELDS_V1 = "FieldsV1"       # raw JSON carried in bytes
    BYTES = "bytes"              # kept as bytes: only runtime.Unknown.raw, never in output
    BYTES_MAP = "map<string,bytes>"  # values as base64 text, their JSON form (Secret.data)
    BASE64 = "bytes (base64)"    # a []byte field, as base64 text: its JSON form (CSR spec.request)


EXPECTED_WIRE = {Kind.INT: VARINT, Kind.BOOL: VARINT}  # every other kind is length-delimited


@dataclass(frozen=True)
class Field:
    number: int
    json_name: str
    kind: Kind
    repeated: bool = False
    keep_zero: bool = False      # Go pointer or no omitempty: a zero value still appears in JSON
    schema: Message | None = None


class Message:
    """A message schema; fields are listed in Go struct order, which is the JSON key order."""

    def __init__(self, name: str, *fields: Field) -> None:
        self.name = name
        self.fields = fields
        self.by_number = {f.number: f for f in fields}


def _string(number: int, name: str, keep_zero: bool = False) -> Field:
    return Field(number, name, Kind.STRING, keep_zero=keep_zero)


def _strings(number: int, name: str) -> Field:
    return Field(number, name, Kind.STRING, repeated=True)


def _int(number: int, name: str, keep_zero: bool = False) -> Field:
    return Field(number, name, Kind.INT, keep_zero=keep_zero)


def _bool(number: int, name: str, keep_zero: bool = False) -> Field:
    return Field(number, name, Kind.BOOL, keep_zero=keep_zero)


def _message(number: int, name: str, schema: Message, repeated: bool = False) -> Field:
    return Field(number, name, Kind.MESSAGE, repeated=repeated, schema=schema)


def _inline(number: int, schema: Message) -> Field:
    return Field(number, "", Kind.INLINE, schema=schema)


def _of(kind: Kind, number: int, name: str) -> Field:
    return Field(number, name, kind)


# apimachinery: meta/v1, runtime, intstr
_TYPE_META = Message("TypeMeta", _string(1, "apiVersion"), _string(2, "kind"))
UNKNOWN = Message(
    "Unknown", _message(1, "typeMeta", _TYPE_META), Field(2, "raw", Kind.BYTES),
    _string(3, "contentEncoding"), _string(4, "contentType"))
INT_OR_STRING = Message("IntOrString", _int(1, "type"), _int(2, "intVal"), _string(3, "strVal"))
TIMESTAMP = Message("Time", _int(1, "seconds"), _int(2, "nanos"))
QUANTITY = Message("Quantity", _string(1, "string"))
_OWNER_REFERENCE = Message(
    "OwnerReference", _string(5, "apiVersion", True), _string(1, "kind", True),
    _string(3, "name", True), _string(4, "uid", True), _bool(6, "controller", True),
    _bool(7, "blockOwnerDeletion", True))
_MANAGED_FIELDS_ENTRY = Message(
    "ManagedFieldsEntry", _string(1, "manager"), _string(2, "operation"), _string(3, "apiVersion"),
    _of(Kind.TIME, 4, "time"), _string(6, "fieldsType"), _of(Kind.FIELDS_V1, 7, "fieldsV1"),
    _string(8, "subresource"))
OBJECT_META = Message(
    "ObjectMeta", _string(1, "name"), _string(2, "generateName"), _string(3, "namespace"),
    _string(4, "selfLink"), _string(5, "uid"), _string(6, "resourceVersion"),
    _int(7, "generation"), _of(Kind.TIME, 8, "creationTimestamp"),
    _of(Kind.TIME, 9, "deletionTimestamp"), _int(10, "deletionGracePeriodSeconds", True),
    _of(Kind.STRING_MAP, 11, "labels"), _of(Kind.STRING_MAP, 12, "annotations"),
    _message(13, "ownerReferences", _OWNER_REFERENCE, repeated=True), _strings(14, "finalizers"),
    _message(17, "managedFields", _MANAGED_FIELDS_ENTRY, repeated=True))
_LABEL_SELECTOR_REQUIREMENT = Message(
    "LabelSelectorRequirement", _string(1, "key", True), _string(2, "operator", True),
    _strings(3, "values"))
_LABEL_SELECTOR = Message(
    "LabelSelector", _of(Kind.STRING_MAP, 1, "matchLabels"),
    _message(2, "matchExpressions", _LABEL_SELECTOR_REQUIREMENT, repeated=True))
_CONDITION = Message(
    "Condition", _string(1, "type", True), _string(2, "status", True),
    _int(3, "observedGeneration"), _of(Kind.TIME, 4, "lastTransitionTime"),
    _string(5, "reason", True), _string(6, "message", True))

# core/v1: containers
_CONTAINER_PORT = Message(
    "ContainerPort", _string(1, "name"), _int(2, "hostPort"), _int(3, "containerPort", True),
    _string(4, "protocol"), _string(5, "hostIP"))
_LOCAL_OBJECT_REFERENCE = Message("LocalObjectReference", _string(1, "name"))
_OBJECT_FIELD_SELECTOR = Message(
    "ObjectFieldSelector", _string(1, "apiVersion"), _string(2, "fieldPath", True))
_RESOURCE_FIELD_SELECTOR = Message(
    "ResourceFieldSelector", _string(1, "containerName"), _string(2, "resource", True),
    _of(Kind.QUANTITY, 3, "divisor"))
_KEY_SELECTOR_FIELDS = (_inline(1, _LOCAL_OBJECT_REFERENCE), _string(2, "key", True),
                        _bool(3, "optional", True))
_CONFIG_MAP_KEY_SELECTOR = Message("ConfigMapKeySelector", *_KEY_SELECTOR_FIELDS)
_SECRET_KEY_SELECTOR = Message("SecretKeySelector", *_KEY_SELECTOR_FIELDS)
_ENV_VAR_SOURCE = Message(
    "EnvVarSource", _message(1, "fieldRef", _OBJECT_FIELD_SELECTOR),
    _message(2, "resourceFieldRef", _RESOURCE_FIELD_SELECTOR),
    _message(3, "configMapKeyRef", _CONFIG_MAP_KEY_SELECTOR),
    _message(4, "secretKeyRef", _SECRET_KEY_SELECTOR))
_ENV_VAR = Message(
    "EnvVar", _string(1, "name", True), _string(2, "value"),
    _message(3, "valueFrom", _ENV_VAR_SOURCE))
_ENV_SOURCE_FIELDS = (_inline(1, _LOCAL_OBJECT_REFERENCE), _bool(2, "optional", True))
_ENV_FROM_SOURCE = Message(
    "EnvFromSource", _string(1, "prefix"),
    _message(2, "configMapRef", Message("ConfigMapEnvSource", *_ENV_SOURCE_FIELDS)),
    _message(3, "secretRef", Message("SecretEnvSource", *_ENV_SOURCE_FIELDS)))
_RESOURCE_REQUIREMENTS = Message(
    "ResourceRequirements", _of(Kind.QUANTITY_MAP, 1, "limits"),
    _of(Kind.QUANTITY_MAP, 2, "requests"),
    _message(3, "claims", Message("ResourceClaim", _string(1, "name", True),
                                  _string(2, "request")), repeated=True))
_HTTP_HEADER = Message("HTTPHeader", _string(1, "name", True), _string(2, "value", True))
_PROBE_HANDLER = Message(
    "ProbeHandler",
    _message(1, "exec", Message("ExecAction", _strings(1, "command"))),
    _message(2, "httpGet", Message(
        "HTTPGetAction", _string(1, "path"), _of(Kind.INT_OR_STRING, 2, "port"),
        _string(3, "host"), _string(4, "scheme"),
        _message(5, "httpHeaders", _HTTP_HEADER, repeated=True))),
    _message(3, "tcpSocket", Message(
        "TCPSocketAction", _of(Kind.INT_OR_STRING, 1, "port"), _string(2, "host"))),
    _message(4, "grpc", Message(
        "GRPCAction", _int(1, "port", True), _string(2, "service", True))))
_PROBE = Message(
    "Probe", _inline(1, _PROBE_HANDLER), _int(2, "initialDelaySeconds"),
    _int(3, "timeoutSeconds"), _int(4, "periodSeconds"), _int(5, "successThreshold"),
    _int(6, "failureThreshold"), _int(7, "terminationGracePeriodSeconds", True))
_VOLUME_MOUNT = Message(
    "VolumeMount", _string(1, "name", True), _bool(2, "readOnly"),
    _string(7, "recursiveReadOnly", True), _string(3, "mountPath", True), _string(4, "subPath"),
    _string(5, "mountPropagation", True), _string(6, "subPathExpr"))
_SECCOMP_PROFILE = Message(
    "SeccompProfile", _string(1, "type", True), _string(2, "localhostProfile", True))
_SECURITY_CONTEXT = Message(
    "SecurityContext",
    _message(1, "capabilities", Message("Capabilities", _strings(1, "add"), _strings(2, "drop"))),
    _bool(2, "privileged", True), _int(4, "runAsUser", True), _int(8, "runAsGroup", True),
    _bool(5, "runAsNonRoot", True), _bool(6, "readOnlyRootFilesystem", True),
    _bool(7, "allowPrivilegeEscalation", True), _string(9, "procMount", True),
    _message(11, "seccompProfile", _SECCOMP_PROFILE))
CONTAINER = Message(
    "Container", _string(1, "name", True), _string(2, "image"), _strings(3, "command"),
    _strings(4, "args"), _string(5, "workingDir"),
    _message(6, "ports", _CONTAINER_PORT, repeated=True),
    _message(19, "envFrom", _ENV_FROM_SOURCE, repeated=True),
    _message(7, "env", _ENV_VAR, repeated=True), _message(8, "resources", _RESOURCE_REQUIREMENTS),
    _string(24, "restartPolicy", True),
    _message(9, "volumeMounts", _VOLUME_MOUNT, repeated=True),
    _message(10, "livenessProbe", _PROBE), _message(11, "readinessProbe", _PROBE),
    _message(22, "startupProbe", _PROBE), _string(13, "terminationMessagePath"),
    _string(20, "terminationMessagePolicy"), _string(14, "imagePullPolicy"),
    _message(15, "securityContext", _SECURITY_CONTEXT), _bool(16, "stdin"),
    _bool(17, "stdinOnce"), _bool(18, "tty"))

# core/v1: pods
_KEY_TO_PATH = Message(
    "KeyToPath", _string(1, "key", True), _string(2, "path", True), _int(3, "mode", True))
_VOLUME_SOURCE = Message(
    "VolumeSource",
    _message(1, "hostPath", Message(
        "HostPathVolumeSource", _string(1, "path", True), _string(2, "type", True))),
    _message(2, "emptyDir", Message(
        "EmptyDirVolumeSource", _string(1, "medium"), _of(Kind.QUANTITY, 2, "sizeLimit"))),
    _message(6, "secret", Message(
        "SecretVolumeSource", _string(1, "secretName"),
        _message(2, "items", _KEY_TO_PATH, repeated=True), _int(3, "defaultMode", True),
        _bool(4, "optional", True))),
    _message(10, "persistentVolumeClaim", Message(
        "PersistentVolumeClaimVolumeSource", _string(1, "claimName", True),
        _bool(2, "readOnly"))),
    _message(19, "configMap", Message(
        "ConfigMapVolumeSource", _inline(1, _LOCAL_OBJECT_REFERENCE),
        _message(2, "items", _KEY_TO_PATH, repeated=True), _int(3, "defaultMode", True),
        _bool(4, "optional", True))))
_VOLUME = Message("Volume", _string(1, "name", True), _inline(2, _VOLUME_SOURCE))
_POD_SECURITY_CONTEXT = Message(
    "PodSecurityContext", _int(2, "runAsUser", True), _int(6, "runAsGroup", True),
    _bool(3, "runAsNonRoot", True), Field(4, "supplementalGroups", Kind.INT, repeated=True),
    _int(5, "fsGroup", True),
    _message(7, "sysctls", Message(
        "Sysctl", _string(1, "name", True), _string(2, "value", True)), repeated=True),
    _string(9, "fsGroupChangePolicy", True), _message(10, "seccompProfile", _SECCOMP_PROFILE))
_TOLERATION = Message(
    "Toleration", _string(1, "key"), _string(2, "operator"), _string(3, "value"),
    _string(4, "effect"), _int(5, "tolerationSeconds", True))
POD_SPEC = Message(
    "PodSpec", _message(1, "volumes", _VOLUME, repeated=True),
    _message(20, "initContainers", CONTAINER, repeated=True),
    _message(2, "containers", CONTAINER, repeated=True), _string(3, "restartPolicy"),
    _int(4, "terminationGracePeriodSeconds", True), _int(5, "activeDeadlineSeconds", True),
    _string(6, "dnsPolicy"), _of(Kind.STRING_MAP, 7, "nodeSelector"),
    _string(8, "serviceAccountName"), _string(9, "serviceAccount"),
    _bool(21, "automountServiceAccountToken", True), _string(10, "nodeName"),
    _bool(11, "hostNetwork"), _bool(12, "hostPID"), _bool(13, "hostIPC"),
    _bool(27, "shareProcessNamespace", True),
    _message(14, "securityContext", _POD_SECURITY_CONTEXT),
    _message(15, "imagePullSecrets", _LOCAL_OBJECT_REFERENCE, repeated=True),
    _string(16, "hostname"), _string(17, "subdomain"), _string(19, "schedulerName"),
    _message(22, "tolerations", _TOLERATION, repeated=True),
    _message(23, "hostAliases", Message(
        "HostAlias", _string(1, "ip", True), _strings(2, "hostnames")), repeated=True),
    _string(24, "priorityClassName"), _int(25, "priority", True),
    _message(28, "readinessGates", Message(
        "PodReadinessGate", _string(1, "conditionType", True)), repeated=True),
    _string(29, "runtimeClassName", True), _bool(30, "enableServiceLinks", True),
    _string(31, "preemptionPolicy", True), _bool(35, "setHostnameAsFQDN", True),
    _message(36, "os", Message("PodOS", _string(1, "name", True))), _bool(37, "hostUsers", True))
POD_TEMPLATE_SPEC = Message(
    "PodTemplateSpec", _message(1, "metadata", OBJECT_META), _message(2, "spec", POD_SPEC))
_POD_STATUS = Message(
    "PodStatus", _string(1, "phase"), _string(3, "message"), _string(4, "reason"),
    _string(11, "nominatedNodeName"), _string(5, "hostIP"), _string(6, "podIP"),
    _of(Kind.TIME, 7, "startTime"), _string(9, "qosClass"))
POD = Message(
    "Pod", _message(1, "metadata", OBJECT_META), _message(2, "spec", POD_SPEC),
    _message(3, "status", _POD_STATUS))

# core/v1: namespaces and services
NAMESPACE = Message(
    "Namespace", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message("NamespaceSpec", _strings(1, "finalizers"))),
    _message(3, "status", Message("NamespaceStatus", _string(1, "phase"))))
_SERVICE_PORT = Message(
    "ServicePort", _string(1, "name"), _string(2, "protocol"), _string(6, "appProtocol", True),
    _int(3, "port", True), _of(Kind.INT_OR_STRING, 4, "targetPort"), _int(5, "nodePort"))
_SERVICE_SPEC = Message(
    "ServiceSpec", _message(1, "ports", _SERVICE_PORT, repeated=True),
    _of(Kind.STRING_MAP, 2, "selector"), _string(3, "clusterIP"), _strings(18, "clusterIPs"),
    _string(4, "type"), _strings(5, "externalIPs"), _string(7, "sessionAffinity"),
    _string(8, "loadBalancerIP"), _strings(9, "loadBalancerSourceRanges"),
    _string(10, "externalName"), _string(11, "externalTrafficPolicy"),
    _int(12, "healthCheckNodePort"), _bool(13, "publishNotReadyAddresses"),
    _message(14, "sessionAffinityConfig", Message(
        "SessionAffinityConfig", _message(1, "clientIP", Message(
            "ClientIPConfig", _int(1, "timeoutSeconds", True))))),
    _strings(19, "ipFamilies"), _string(17, "ipFamilyPolicy", True),
    _bool(20, "allocateLoadBalancerNodePorts", True), _string(21, "loadBalancerClass", True),
    _string(22, "internalTrafficPolicy", True), _string(23, "trafficDistribution", True))
_LOAD_BALANCER_INGRESS = Message(
    "LoadBalancerIngress", _string(1, "ip"), _string(2, "hostname"), _string(3, "ipMode", True),
    _message(4, "ports", Message(
        "PortStatus", _int(1, "port", True), _string(2, "protocol", True),
        _string(3, "error", True)), repeated=True))
_SERVICE_STATUS = Message(
    "ServiceStatus",
    _message(1, "loadBalancer", Message(
        "LoadBalancerStatus", _message(1, "ingress", _LOAD_BALANCER_INGRESS, repeated=True))),
    _message(2, "conditions", _CONDITION, repeated=True))
SERVICE = Message(
    "Service", _message(1, "metadata", OBJECT_META), _message(2, "spec", _SERVICE_SPEC),
    _message(3, "status", _SERVICE_STATUS))

# apps/v1
_DEPLOYMENT_STRATEGY = Message(
    "DeploymentStrategy", _string(1, "type"),
    _message(2, "rollingUpdate", Message(
        "RollingUpdateDeployment", _of(Kind.INT_OR_STRING, 1, "maxUnavailable"),
        _of(Kind.INT_OR_STRING, 2, "maxSurge"))))
_DEPLOYMENT_SPEC = Message(
    "DeploymentSpec", _int(1, "replicas", True), _message(2, "selector", _LABEL_SELECTOR),
    _message(3, "template", POD_TEMPLATE_SPEC), _message(4, "strategy", _DEPLOYMENT_STRATEGY),
    _int(5, "minReadySeconds"), _int(6, "revisionHistoryLimit", True), _bool(7, "paused"),
    _int(9, "progressDeadlineSeconds", True))
_DEPLOYMENT_CONDITION = Message(
    "DeploymentCondition", _string(1, "type", True), _string(2, "status", True),
    _of(Kind.TIME, 6, "lastUpdateTime"), _of(Kind.TIME, 7, "lastTransitionTime"),
    _string(4, "reason"), _string(5, "message"))
_DEPLOYMENT_STATUS = Message(
    "DeploymentStatus", _int(1, "observedGeneration"), _int(2, "replicas"),
    _int(3, "updatedReplicas"), _int(7, "readyReplicas"), _int(4, "availableReplicas"),
    _int(5, "unavailableReplicas"), _int(9, "terminatingReplicas", True),
    _message(6, "conditions", _DEPLOYMENT_CONDITION, repeated=True),
    _int(8, "collisionCount", True))
DEPLOYMENT = Message(
    "Deployment", _message(1, "metadata", OBJECT_META), _message(2, "spec", _DEPLOYMENT_SPEC),
    _message(3, "status", _DEPLOYMENT_STATUS))
_REPLICA_SET_CONDITION = Message(
    "ReplicaSetCondition", _string(1, "type", True), _string(2, "status", True),
    _of(Kind.TIME, 3, "lastTransitionTime"), _string(4, "reason"), _string(5, "message"))
REPLICA_SET = Message(
    "ReplicaSet", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message(
        "ReplicaSetSpec", _int(1, "replicas", True), _int(4, "minReadySeconds"),
        _message(2, "selector", _LABEL_SELECTOR), _message(3, "template", POD_TEMPLATE_SPEC))),
    _message(3, "status", Message(
        "ReplicaSetStatus", _int(1, "replicas", True), _int(2, "fullyLabeledReplicas"),
        _int(4, "readyReplicas"), _int(5, "availableReplicas"),
        _int(7, "terminatingReplicas", True), _int(3, "observedGeneration"),
        _message(6, "conditions", _REPLICA_SET_CONDITION, repeated=True))))

# The self reviews kubectl POSTs as protobuf (`kubectl auth can-i`, `auth whoami`): field
# numbers of k8s.io/api authorization/v1 and authentication/v1.
_RESOURCE_ATTRIBUTES = Message("ResourceAttributes", *(_string(i, n) for i, n in enumerate(
    ("namespace", "verb", "group", "version", "resource", "subresource", "name"), 1)))
_NON_RESOURCE_ATTRIBUTES = Message("NonResourceAttributes", _string(1, "path"), _string(2, "verb"))
SELF_SUBJECT_ACCESS_REVIEW = Message(
    "SelfSubjectAccessReview", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message(
        "SelfSubjectAccessReviewSpec", _message(1, "resourceAttributes", _RESOURCE_ATTRIBUTES),
        _message(2, "nonResourceAttributes", _NON_RESOURCE_ATTRIBUTES))))
SELF_SUBJECT_RULES_REVIEW = Message(
    "SelfSubjectRulesReview", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message("SelfSubjectRulesReviewSpec", _string(1, "namespace"))))
SELF_SUBJECT_REVIEW = Message("SelfSubjectReview", _message(1, "metadata", OBJECT_META))

# Every message a request body may hold, by (apiVersion, kind). Fixed here, at import: no other
# module adds to it. Group modules import the building blocks above, hence the late imports.
from pocketkube.apiserver.protobuf import (  # noqa: E402
    messages_authentication,
    messages_batch,
    messages_certificates,
    messages_config,
    messages_networking,
    messages_rbac,
    messages_resources,
)

SCHEMAS: dict[tuple[str, str], Message] = {
    **messages_config.SCHEMAS,
    **messages_authentication.SCHEMAS,
    ("v1", "Namespace"): NAMESPACE,
    ("v1", "Service"): SERVICE,
    ("v1", "Pod"): POD,
    ("apps/v1", "Deployment"): DEPLOYMENT,
    ("apps/v1", "ReplicaSet"): REPLICA_SET,
    ("batch/v1", "Job"): messages_batch.JOB,
    ("batch/v1", "CronJob"): messages_batch.CRON_JOB,
    ("authorization.k8s.io/v1", "SelfSubjectAccessReview"): SELF_SUBJECT_ACCESS_REVIEW,
    ("authorization.k8s.io/v1", "SelfSubjectRulesReview"): SELF_SUBJECT_RULES_REVIEW,
    ("authentication.k8s.io/v1", "SelfSubjectReview"): SELF_SUBJECT_REVIEW,
    **messages_rbac.SCHEMAS,
    **messages_resources.SCHEMAS,
    **messages_networking.SCHEMAS,
    **messages_certificates.SCHEMAS,
}

