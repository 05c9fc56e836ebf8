"""The host-package images (nginx, python) now live in `pocketkube.host_images`, where `pocketkube
image load --from-host` uses them; this name stays for the tests that import it."""

from pocketkube.host_images import (  # noqa: F401 (re-exported)
    NGINX,
    PYTHON,
    nginx_image,
    python_image,
    shared_libraries,
)
