"""Safe network defaults for the demo: nothing leaves the machine unless asked for.

``safe_environment`` is called before gradio, transformers or huggingface_hub are imported
(both read these variables at import or launch): gradio's analytics and version check off,
Hugging Face telemetry off, and the hub offline unless the user set ``HF_HUB_OFFLINE=0``.
``host_warning`` is what ``mullm demo`` prints when asked to listen beyond this machine.
"""

from __future__ import annotations

import os

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def safe_environment() -> None:
    """Set the environment so that starting the demo opens no outbound connection."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    # A user who wants the hub (a model given by hub id) says so with HF_HUB_OFFLINE=0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def host_warning(host: str) -> str | None:
    """The warning for serving on ``host``; None for a loopback address."""
    if host in LOOPBACK:
        return None
    return (f"warning: --host {host} serves the demo to every machine that can reach this one "
            "through that interface, with no authentication: anyone there can use the model "
            "and upload files. Use 127.0.0.1 (the default) unless that is what you want.")


def share_notice() -> str:
    """What ``--share`` does, printed before gradio opens the tunnel."""
    return ("note: --share asks gradio.live for a public link (this needs the internet); "
            "anyone with the link can use the model and upload files for up to a week.")


__all__ = ["LOOPBACK", "host_warning", "safe_environment", "share_notice"]
