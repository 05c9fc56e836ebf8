"""The pause (sandbox) image every pod's sandbox runs first, built on the node from busybox.

No registry is assumed reachable, so the agent builds its sandbox image itself from Debian's
static busybox (a shell that waits for SIGTERM) with the deterministic OCI builder, and imports
it into its containerd when absent. The name says it is ours, not registry.k8s.io's.
"""

from __future__ import annotations

from pathlib import Path

from pocketkube.util.oci_layout import Content, FileSpec, Symlink

PAUSE_IMAGE = "pocketkube.local/pause:1.0"
BUSYBOX = Path("/bin/busybox")

# The pause (sandbox) container's command. It must end promptly on SIGTERM/SIGINT: the kernel
# drops a signal sent to a PID namespace's init unless init has a handler for it, so busybox
# `sleep infinity` as PID 1 ignores SIGTERM and every sandbox stop would wait for SIGKILL. A shell
# `trap` installs a handler; `wait` on a background sleep returns as soon as a trapped signal
# arrives (a foreground `sleep` would delay the trap by up to an hour). The trap also ends the
# sleep so nothing outlives the shell when it does not run as a namespace's init. While it waits,
# ash reaps any child (waitpid(-1)), so orphans in a shared PID namespace do not stay zombies.
# (A static C pause would be smaller, but needs a compiler; busybox-static is already here.)
PAUSE_SCRIPT = 'trap \'kill $! 2>/dev/null; exit 0\' TERM INT; while :; do sleep 3600 & wait; done'
PAUSE_USER = "65535:65535"  # as registry.k8s.io/pause: the sandbox needs no privilege



def pause_files(busybox: bytes) -> dict:
    """`build_image` arguments (but name, tag and out_dir) for the pause image from busybox's bytes."""
    files: dict[str, FileSpec] = {"/bin/busybox": Content(busybox, 0o755),
                                  "/bin/sh": Symlink("/bin/busybox"), "/bin/sleep": Symlink("/bin/busybox")}
    return {"files": files, "entrypoint": ["/bin/sh", "-c", PAUSE_SCRIPT], "user": PAUSE_USER}
