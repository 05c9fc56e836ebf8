"""`kubectl get jobs|cronjobs` columns and cells (printJob/printCronJob)."""

from __future__ import annotations

from pocketkube.api.timestamps import now_rfc3339
from pocketkube.apiserver import tables

NOW = 1_800_000_000.0


def cells(plural: str, obj: dict) -> list:
    t = tables.table(plural, "batch", [obj], NOW)
    return t["rows"][0]["cells"]


def columns(plural: str) -> list[str]:
    return [c["name"] for c in tables.table(plural, "batch", [], NOW)["columnDefinitions"] if c["priority"] == 0]


def test_job_columns_and_cells():
    assert columns("jobs") == ["Name", "Status", "Completions", "Duration", "Age"]
    job = {"metadata": {"name": "pi", "creationTimestamp": now_rfc3339(NOW - 300)},
           "spec": {"completions": 3, "parallelism": 2, "selector": {"matchLabels": {"a": "b"}},
                    "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
           "status": {"succeeded": 1, "startTime": now_rfc3339(NOW - 200)}}
    assert cells("jobs", job) == ["pi", "Running", "1/3", "3m20s", "5m", "c", "busybox", "a=b"]
    job["status"].update(completionTime=now_rfc3339(NOW - 100), succeeded=3,
                         conditions=[{"type": "SuccessCriteriaMet", "status": "True"},
                                     {"type": "Complete", "status": "True"}])
    assert cells("jobs", job)[1:4] == ["Complete", "3/3", "100s"]
    job = {"metadata": {"name": "q"}, "spec": {"parallelism": 4}, "status": {
        "conditions": [{"type": "FailureTarget", "status": "True"}]}}
    assert cells("jobs", job)[1:4] == ["FailureTarget", "0/1 of 4", ""]
    job["metadata"]["deletionTimestamp"] = now_rfc3339(NOW)
    assert cells("jobs", job)[1] == "Terminating"


def test_cronjob_columns_and_cells():
    assert columns("cronjobs") == ["Name", "Schedule", "Timezone", "Suspend", "Active", "Last Schedule", "Age"]
    cj = {"metadata": {"name": "tick", "creationTimestamp": now_rfc3339(NOW - 3600)},
          "spec": {"schedule": "*/1 * * * *", "suspend": False, "jobTemplate": {"spec": {"template": {}}}},
          "status": {"active": [{"name": "tick-1"}], "lastScheduleTime": now_rfc3339(NOW - 30)}}
    assert cells("cronjobs", cj)[:7] == ["tick", "*/1 * * * *", "<none>", "False", 1, "30s", "60m"]
    cj["spec"]["timeZone"] = "Europe/Paris"
    del cj["status"]
    assert cells("cronjobs", cj)[2:6] == ["Europe/Paris", "False", 0, "<none>"]
