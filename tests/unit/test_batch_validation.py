"""Job and CronJob defaulting and validation, worded as pkg/apis/batch/validation."""

from __future__ import annotations

import copy

from pocketkube.registry.batch import cronjobs, jobs


def job(**spec) -> dict:
    base = {"template": {"spec": {"restartPolicy": "Never",
                                  "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}}}
    base.update(spec)
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u-1"}, "spec": base}


def created(obj: dict) -> dict:
    jobs.default(obj)
    return obj


def messages(errs) -> list[str]:
    return [str(e) for e in errs]


def test_defaults_and_generated_selector():
    j = created(job())
    spec = j["spec"]
    assert (spec["completions"], spec["parallelism"], spec["backoffLimit"]) == (1, 1, 6)
    assert spec["completionMode"] == "NonIndexed" and spec["suspend"] is False
    assert spec["podReplacementPolicy"] == "TerminatingOrFailed"
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "u-1"}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "u-1", "batch.kubernetes.io/job-name": "pi",
        "controller-uid": "u-1", "job-name": "pi"}
    assert "labels" not in j["metadata"]
    assert jobs.validate(j) == []


def test_parallelism_alone_leaves_completions_unset():
    j = created(job(parallelism=3))
    assert j["spec"]["parallelism"] == 3 and "completions" not in j["spec"]


def test_job_labels_come_from_template_labels():
    j = job()
    j["spec"]["template"]["metadata"] = {"labels": {"app": "x"}}
    created(j)
    assert j["metadata"]["labels"]["app"] == "x" and j["metadata"]["labels"]["job-name"] == "pi"


def test_restart_policy_always_is_rejected():
    j = job()
    del j["spec"]["template"]["spec"]["restartPolicy"]
    assert messages(jobs.validate(created(j))) == [
        'spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"']
    j["spec"]["template"]["spec"]["restartPolicy"] = "Sometimes"
    # The pod spec's own check and the Job's, as upstream reports both.
    assert messages(jobs.validate(j))[-1] == (
        'spec.template.spec.restartPolicy: Unsupported value: "Sometimes": supported values: "OnFailure", "Never"')


def test_user_selector_without_manual_selector():
    j = created(job(selector={"matchLabels": {"app": "x"}}))
    j["spec"]["template"]["metadata"]["labels"]["app"] = "x"
    assert any("`selector` not auto-generated" in m for m in messages(jobs.validate(j)))


def test_manual_selector():
    j = job(manualSelector=True, selector={"matchLabels": {"app": "x"}})
    j["spec"]["template"]["metadata"] = {"labels": {"app": "y"}}
    assert messages(jobs.validate(created(j))) == [
        'spec.template.metadata.labels: Invalid value: {"app":"y"}: `selector` does not match template `labels`']


def test_counts_and_modes():
    j = created(job(parallelism=-1, backoffLimit=-2, completionMode="Sometimes"))
    msgs = messages(jobs.validate(j))
    assert "spec.parallelism: Invalid value: -1: must be greater than or equal to 0" in msgs
    assert "spec.backoffLimit: Invalid value: -2: must be greater than or equal to 0" in msgs
    assert 'spec.completionMode: Unsupported value: "Sometimes": supported values: "NonIndexed", "Indexed"' in msgs
    j = created(job(completionMode="Indexed", parallelism=2))
    assert messages(jobs.validate(j)) == ["spec.completions: Required value: when completion mode is Indexed"]


def test_pod_failure_policy():
    rules = [{"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 3, 2]}},
             {"action": "Explode", "onPodConditions": [{"type": "DisruptionTarget"}]},
             {"action": "Ignore"}]
    j = created(job(podFailurePolicy={"rules": rules}))
    assert j["spec"]["podFailurePolicy"]["rules"][1]["onPodConditions"][0]["status"] == "True"
    assert j["spec"]["podReplacementPolicy"] == "Failed"
    msgs = messages(jobs.validate(j))
    assert "spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator" in msgs
    assert "spec.podFailurePolicy.rules[0].onExitCodes.values: Invalid value: [0,3,2]: must be ordered" in msgs
    assert any(m.startswith('spec.podFailurePolicy.rules[1].action: Unsupported value: "Explode"') for m in msgs)
    assert ("spec.podFailurePolicy.rules[2]: Invalid value: specifying one of OnExitCodes and OnPodConditions "
            "is required") in msgs
    assert ('spec.podFailurePolicy.rules[1].action: Unsupported value: "Explode": supported values: '
            '"Count", "FailIndex", "FailJob", "Ignore"') in msgs
    j = job(podFailurePolicy={"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]})
    j["spec"]["template"]["spec"]["restartPolicy"] = "OnFailure"
    assert messages(jobs.validate(created(j))) == [
        'spec.template.spec.restartPolicy: Invalid value: "OnFailure": only "Never" is supported when podFailurePolicy is specified']


def test_template_immutable_and_suspended_exception():
    old = created(job())
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:2"
    assert any(m.startswith("spec.template: Invalid value") and m.endswith("field is immutable")
               for m in messages(jobs.validate_update(new, old)))
    old["spec"]["suspend"] = True
    new = copy.deepcopy(old)
    new["spec"]["template"]["spec"]["nodeSelector"] = {"zone": "a"}
    assert jobs.validate_update(new, old) == []
    new["spec"]["completions"] = 3
    assert "spec.completions: Invalid value: 3: field is immutable" in messages(jobs.validate_update(new, old))


def cronjob(**spec) -> dict:
    base = {"schedule": "*/1 * * * *",
            "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure", "containers": [{"name": "c", "image": "busybox"}]}}}}}
    base.update(spec)
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "tick", "namespace": "default"},
            "spec": base}


def test_cronjob_defaults():
    c = cronjob()
    cronjobs.default(c)
    s = c["spec"]
    assert (s["concurrencyPolicy"], s["suspend"], s["successfulJobsHistoryLimit"], s["failedJobsHistoryLimit"]) == (
        "Allow", False, 3, 1)
    assert cronjobs.validate(c) == []


def test_cronjob_errors():
    c = cronjob(schedule="every minute", concurrencyPolicy="Sometimes", timeZone="Local", startingDeadlineSeconds=-1)
    c["metadata"]["name"] = "x" * 53
    cronjobs.default(c)
    msgs = messages(cronjobs.validate(c))
    assert f'metadata.name: Invalid value: "{"x" * 53}": must be no more than 52 characters' in msgs
    assert 'spec.schedule: Invalid value: "every minute": expected exactly 5 fields, found 2: [every minute]' in msgs
    assert 'spec.concurrencyPolicy: Unsupported value: "Sometimes": supported values: "Allow", "Forbid", "Replace"' in msgs
    assert any(m.startswith('spec.timeZone: Invalid value: "Local"') for m in msgs)
    assert "spec.startingDeadlineSeconds: Invalid value: -1: must be greater than or equal to 0" in msgs


def test_cronjob_tz_in_schedule_only_kept():
    c = cronjob(schedule="TZ=UTC 0 * * * *")
    cronjobs.default(c)
    assert messages(cronjobs.validate(c)) == [
        'spec.schedule: Invalid value: "TZ=UTC 0 * * * *": cannot use TZ or CRON_TZ in schedule, use timeZone field instead']
    assert cronjobs.validate_update(copy.deepcopy(c), c) == []


def test_cronjob_template_restart_policy_and_selector():
    c = cronjob()
    c["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    c["spec"]["jobTemplate"]["spec"]["selector"] = {"matchLabels": {"a": "b"}}
    cronjobs.default(c)
    msgs = messages(cronjobs.validate(c))
    assert ('spec.jobTemplate.spec.template.spec.restartPolicy: Required value: '
            'valid values: "OnFailure", "Never"') in msgs
    assert any(m.endswith("`selector` will be auto-generated") for m in msgs)


def test_elastic_indexed_completions():
    old = created(job(completionMode="Indexed", completions=2, parallelism=2))
    new = copy.deepcopy(old)
    new["spec"]["completions"] = new["spec"]["parallelism"] = 4
    assert jobs.validate_update(new, old) == []
    new["spec"]["parallelism"] = 3
    assert "spec.completions: Invalid value: 4: can only be modified in tandem with spec.parallelism" in messages(
        jobs.validate_update(new, old))


def test_cronjob_long_name_only_checked_at_create_and_zone_chars():
    c = cronjob(timeZone="../etc/passwd")
    c["metadata"]["name"] = "y" * 60
    cronjobs.default(c)
    msgs = messages(cronjobs.validate(c))
    assert 'spec.timeZone: Invalid value: "../etc/passwd": unknown time zone ../etc/passwd' in msgs
    assert any(m.startswith("metadata.name") for m in msgs)
    c["spec"]["timeZone"] = "Europe/Paris"
    assert cronjobs.validate_update(copy.deepcopy(c), c) == []
