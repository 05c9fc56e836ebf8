"""Images for the pod workers, as the kubelet's image manager (pkg/kubelet/images): pull policy,
pulls through the runtime with back-off, and the Events a user sees in `kubectl describe`.

Pure decisions first (policy, messages); then ImageManager, which asks the runtime
(image_status, pull_image) and tells the pod worker whether the container can be created and,
if not, why it waits (ErrImagePull, ImagePullBackOff, ErrImageNeverPull, InvalidImageName) and
when to try again. Pulls of one image by several pods at once share one runtime call.

One addition to upstream, from issue 9: when a pull fails because no registry answered at all
(ImagePullError.unreachable) and the exact reference is present on the node, the local image
runs, with a Warning Event `PullFailedUsingLocal`. A registry that answers (not found,
unauthorized) still fails the pull as upstream.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pocketkube.agent.kubelet.pod_status import Waiting
from pocketkube.agent.runtime.interface import (
    ImageInfo,
    ImagePullError,
    InvalidImageName,
    RegistryAuth,
    Runtime,
)
from pocketkube.agent.runtime.reference import go_quote, parse_image, parse_reference, with_default_tag
from pocketkube.client.events import NORMAL, WARNING
from pocketkube.util.backoff import Backoff

log = logging.getLogger(__name__)

ALWAYS, IF_NOT_PRESENT, NEVER = "Always", "IfNotPresent", "Never"
NEVER_PULL_RETRY = 10.0  # an image loaded later (`pocketkube image load`) is picked up this soon
PULL_FAILED_USING_LOCAL = "PullFailedUsingLocal"

EventFn = Callable[[str, str, str], None]  # (type, reason, message)
CredentialsFn = Callable[[str], Awaitable[list[RegistryAuth]]]  # image → credentials to try


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------

def default_pull_policy(image: str) -> str:
    """SetDefaults_Container (as registry/core/pods/defaults does): Always when the tag is
    `latest` or neither a tag nor a digest is given, else IfNotPresent."""
    return ALWAYS if parse_image(image).tag == "latest" else IF_NOT_PRESENT


def pull_policy(container: dict) -> str:
    return container.get("imagePullPolicy") or default_pull_policy(container.get("image") or "")


def should_pull(policy: str, present: bool) -> bool:
    """shouldPullImage: Never never pulls; Always always does; IfNotPresent when absent."""
    if policy == NEVER:
        return False
    return policy == ALWAYS or (policy == IF_NOT_PRESENT and not present)


def image_is_label(runtime_name: str, container: dict) -> bool:
    """The process runtime runs a container's explicit command (or args) as a host program
    whatever its image: the image is only a label there, so nothing is looked up or pulled
    (as before issue 9). Every CRI runtime needs the image."""
    return runtime_name == "process" and bool(container.get("command") or container.get("args"))


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String of a duration truncated to milliseconds: 0s, 250ms, 1.5s, 10s,
    1m20s, 5m0s, 1h0m0.001s."""
    ms = int(seconds * 1000)
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, frac = divmod(rest, 1000)
    text = f"{secs}.{frac:03d}".rstrip("0") if frac else str(secs)
    if hours:
        return f"{hours}h{minutes}m{text}s"
    if minutes:
        return f"{minutes}m{text}s"
    return f"{text}s"


def pulled_message(image: str, pull_seconds: float, total_seconds: float, size: int | None = None) -> str:
    """The `Pulled` Event after a pull; the image size only when the runtime reported one."""
    message = (f"Successfully pulled image {go_quote(image)} in {go_duration(pull_seconds)} "
               f"({go_duration(total_seconds)} including waiting).")
    return f"{message} Image size: {size} bytes." if size else message


def invalid_image_message(image: str, error: str) -> str:
    return f"Failed to apply default image tag {go_quote(image)}: {error}"


def never_pull_message(image: str) -> str:
    return f"Container image {go_quote(image)} is not present with pull policy of Never"


def unreachable_message(error: str) -> str:
    """The runtime's error, and what to do when no registry answers and the node lacks the image."""
    return (f"{error}; no registry could be reached and the image is not on this node: load it into the "
            "cluster with `pocketkube image load FILE.tar` (a `docker save` or OCI archive)")


def used_local_message(image: str, error: str) -> str:
    return (f"Failed to pull image {go_quote(image)}: {error}; no registry could be reached, so the image "
            f"present on this node is used")


# ---------------------------------------------------------------------------------------------
# The image manager
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageOutcome:
    """What the pod worker does next: create the container from `info` (with `image`, the
    normalized reference), or wait (`waiting`) and retry after `retry` seconds (None: only when
    the pod changes)."""

    info: ImageInfo | None = None
    image: str = ""
    waiting: Waiting | None = None
    retry: float | None = None


class ImageManager:
    def __init__(self, runtime: Runtime, backoff: Backoff) -> None:
        self.runtime = runtime
        self.backoff = backoff  # the kubelet's image-pull back-off, per pod and container
        self._pulls: dict[tuple, asyncio.Future[tuple[ImageInfo, float]]] = {}
        self._errors: dict[str, str] = {}  # back-off key → the last pull error, for ImagePullBackOff

    def forget(self, pod_uid: str) -> None:
        self.backoff.forget_prefix(f"{pod_uid}/")
        for key in [k for k in self._errors if k.startswith(f"{pod_uid}/")]:
            del self._errors[key]

    async def ensure(self, pod_uid: str, container: dict, event: EventFn,
                     previous: Waiting | None = None, credentials: CredentialsFn | None = None) -> ImageOutcome:
        """EnsureImageExists: the image for `container`, pulled as its policy says; `credentials`
        gives the pod's registry credentials for an image, asked only when a pull is needed."""
        image = container.get("image") or ""
        try:
            ref = parse_reference(image)
            tagged = with_default_tag(image)
        except InvalidImageName as e:
            return self._invalid(image, str(e), event, previous)
        normalized = ref.normalized()
        if image_is_label(self.runtime.name, container):
            event(NORMAL, "Pulled", f"Container image {go_quote(image)} already present on machine")
            return ImageOutcome(ImageInfo(tagged, ""), normalized)
        try:
            present = await self.runtime.image_status(tagged)
        except InvalidImageName as e:
            return self._invalid(image, str(e), event, previous)
        policy = pull_policy(container)
        if not should_pull(policy, present is not None):
            if present is not None:
                event(NORMAL, "Pulled", f"Container image {go_quote(image)} already present on machine")
                return ImageOutcome(present, normalized)
            message = never_pull_message(image)
            event(WARNING, "ErrImageNeverPull", message)
            event(WARNING, "Failed", "Error: ErrImageNeverPull")
            return ImageOutcome(waiting=Waiting("ErrImageNeverPull", message), retry=NEVER_PULL_RETRY)

        key = f"{pod_uid}/{container.get('name', '')}/image"
        if self.backoff.failures_pending(key):
            waiting = Waiting("ImagePullBackOff", f"Back-off pulling image {go_quote(image)}: "
                                                  f"ErrImagePull: {self._errors.get(key, '')}")
            if previous is None or previous.reason != "ImagePullBackOff":
                event(NORMAL, "BackOff", f"Back-off pulling image {go_quote(image)}")
                event(WARNING, "Failed", "Error: ImagePullBackOff")
            return ImageOutcome(waiting=waiting, retry=self.backoff.remaining(key) + 0.01)

        event(NORMAL, "Pulling", f"Pulling image {go_quote(image)}")
        asked = time.monotonic()
        try:
            auths = tuple(await credentials(tagged)) if credentials is not None else ()
            info, pull_seconds = await self._pull(tagged, auths)
        except InvalidImageName as e:
            return self._invalid(image, str(e), event, previous)
        except ImagePullError as e:
            if e.unreachable:
                local = await self._local(tagged)
                if local is not None:
                    event(WARNING, PULL_FAILED_USING_LOCAL, used_local_message(image, str(e)))
                    return ImageOutcome(local, normalized)
            error = unreachable_message(str(e)) if e.unreachable else str(e)
            event(WARNING, "Failed", f"Failed to pull image {go_quote(image)}: {error}")
            self.backoff.next(key)
            self._errors[key] = error
            event(WARNING, "Failed", "Error: ErrImagePull")
            return ImageOutcome(waiting=Waiting("ErrImagePull", error), retry=self.backoff.delay(key) + 0.01)
        event(NORMAL, "Pulled", pulled_message(image, pull_seconds, time.monotonic() - asked,
                                               getattr(info, "size", None)))
        self.backoff.reset(key)
        self._errors.pop(key, None)
        return ImageOutcome(info, normalized)

    @staticmethod
    def _invalid(image: str, error: str, event: EventFn, previous: Waiting | None) -> ImageOutcome:
        """No retry: the reference can only be fixed by changing the pod (which wakes its worker)."""
        waiting = Waiting("InvalidImageName", invalid_image_message(image, error))
        if previous != waiting:
            event(WARNING, "InspectFailed", waiting.message)
            event(WARNING, "Failed", "Error: InvalidImageName")
        return ImageOutcome(waiting=waiting)

    async def _pull(self, image: str, auths: tuple[RegistryAuth, ...] = ()) -> tuple[ImageInfo, float]:
        """One runtime pull per image (and credentials) at a time, shared by every pod that asks meanwhile."""
        key = (image, auths)
        pull = self._pulls.get(key)
        if pull is None:
            pull = asyncio.ensure_future(self._timed_pull(image, auths))
            self._pulls[key] = pull
            pull.add_done_callback(lambda _: self._pulls.pop(key, None))
        return await asyncio.shield(pull)

    async def _timed_pull(self, image: str, auths: tuple[RegistryAuth, ...]) -> tuple[ImageInfo, float]:
        """Without credentials when none match the image; else each in turn until one works
        (the error is the last one's), as the kubelet's puller does."""
        started = time.monotonic()
        if not auths:
            return await self.runtime.pull_image(image), time.monotonic() - started
        error: ImagePullError | None = None
        for auth in auths:
            try:
                return await self.runtime.pull_image(image, auth=auth), time.monotonic() - started
            except ImagePullError as e:
                error = e
        assert error is not None
        raise error

    async def _local(self, image: str) -> ImageInfo | None:
        try:
            return await self.runtime.image_status(image)
        except Exception as e:  # noqa: BLE001 - the fallback is best effort; the pull error stands
            log.warning("image status of %s after an unreachable registry failed: %s", image, e)
            return None
