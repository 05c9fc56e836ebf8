"""The kubelet, split along its own lines (as pkg/kubelet is):

- pod_status: the pod's status as pure functions (phase, conditions, container statuses);
- pod_workers: the per-pod sync loop (sandbox, start, restart with back-off, probes, graceful deletion);
- image_manager: pull policy, pulls through the runtime with back-off, and their Events;
- kubelet: the wiring (informers, workers, status writes, events).
"""

from __future__ import annotations

from pocketkube.agent.kubelet.kubelet import Kubelet

__all__ = ["Kubelet"]
