"""batch/v1 message schemas (k8s.io/api/batch/v1 generated.proto): what `kubectl create job`,
`create job --from=cronjob/x` and `create cronjob` send. Status messages are left out: a
generator command never sends one, and unknown field numbers are skipped."""

from __future__ import annotations

from pocketkube.apiserver.protobuf.messages import (
    _LABEL_SELECTOR,
    OBJECT_META,
    POD_TEMPLATE_SPEC,
    Field,
    Kind,
    Message,
    _bool,
    _int,
    _message,
    _string,
)

_ON_EXIT_CODES = Message(
    "PodFailurePolicyOnExitCodesRequirement", _string(1, "containerName", True),
    _string(2, "operator", True), Field(3, "values", Kind.INT, repeated=True))
_ON_POD_CONDITIONS = Message(
    "PodFailurePolicyOnPodConditionsPattern", _string(1, "type", True), _string(2, "status", True))
_POD_FAILURE_POLICY = Message(
    "PodFailurePolicy", _message(1, "rules", Message(
        "PodFailurePolicyRule", _string(1, "action", True), _message(2, "onExitCodes", _ON_EXIT_CODES),
        _message(3, "onPodConditions", _ON_POD_CONDITIONS, repeated=True)), repeated=True))
_SUCCESS_POLICY = Message(
    "SuccessPolicy", _message(1, "rules", Message(
        "SuccessPolicyRule", _string(1, "succeededIndexes", True), _int(2, "succeededCount", True)),
        repeated=True))
# Every JobSpec scalar is a Go pointer: a zero that is sent is kept.
JOB_SPEC = Message(
    "JobSpec", _int(1, "parallelism", True), _int(2, "completions", True),
    _int(3, "activeDeadlineSeconds", True), _message(11, "podFailurePolicy", _POD_FAILURE_POLICY),
    _message(16, "successPolicy", _SUCCESS_POLICY), _int(7, "backoffLimit", True),
    _int(12, "backoffLimitPerIndex", True), _int(13, "maxFailedIndexes", True),
    _message(4, "selector", _LABEL_SELECTOR), _bool(5, "manualSelector", True),
    _message(6, "template", POD_TEMPLATE_SPEC), _int(8, "ttlSecondsAfterFinished", True),
    _string(9, "completionMode", True), _bool(10, "suspend", True),
    _string(14, "podReplacementPolicy", True), _string(15, "managedBy", True))
JOB = Message("Job", _message(1, "metadata", OBJECT_META), _message(2, "spec", JOB_SPEC))
_JOB_TEMPLATE_SPEC = Message(
    "JobTemplateSpec", _message(1, "metadata", OBJECT_META), _message(2, "spec", JOB_SPEC))
CRON_JOB = Message(
    "CronJob", _message(1, "metadata", OBJECT_META),
    _message(2, "spec", Message(
        "CronJobSpec", _string(1, "schedule", True), _string(8, "timeZone", True),
        _int(2, "startingDeadlineSeconds", True), _string(3, "concurrencyPolicy"),
        _bool(4, "suspend", True), _message(5, "jobTemplate", _JOB_TEMPLATE_SPEC),
        _int(6, "successfulJobsHistoryLimit", True), _int(7, "failedJobsHistoryLimit", True))))
