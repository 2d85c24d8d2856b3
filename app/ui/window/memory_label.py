"""The status bar's memory entry: which plan the models were loaded with, and what its number is.

The planner's figure (`MemoryPlan.describe`, "… — expects 2.1 GB RAM") counts the model weights and their
working memory; the process uses more (Python, torch, libraries, caches; 6.7 GB was measured against a 2.1 GB
figure). So the label names the plan only, and the tooltip gives the figure as what it is.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

log = logging.getLogger(__name__)

_ESTIMATE_MARK = " — expects "
# What a ComfyUI server's session reports as its "plan" (app.remote.session): "ComfyUI 0.8.0 at URL (device)".
_REMOTE_PLAN = re.compile(r"ComfyUI (?P<version>\S+) at (?P<url>\S+) \((?P<device>.*)\)")


def memory_label(
    setting: str, loaded_plan: str, server_name: Callable[[str], str] | None = None
) -> tuple[str, str]:
    """(label text, tooltip) for the plan chosen in the settings and the one the engine reported ("" if none).
    A server's plan is shown short, "ComfyUI 0.8.0 · gpu-box" (`server_name`: URL -> the user's name for it)."""
    remote = _REMOTE_PLAN.fullmatch(loaded_plan)
    if remote is not None:
        name = server_name(remote["url"]) if server_name is not None else remote["url"]
        return f"ComfyUI {remote['version']} · {name}", f"Models loaded by {loaded_plan}"
    if not loaded_plan:
        return f"Memory plan: {setting}", f"Memory plan setting: {setting}"
    plan, _, estimate = loaded_plan.partition(_ESTIMATE_MARK)
    tooltip = f"Memory plan setting: {setting}\nLoaded with: {plan}"
    if estimate:
        tooltip += (
            f"\nPlanner's estimate for the model weights and their working memory: {estimate}."
            "\nThe whole process uses more (Python, torch, libraries, caches)."
        )
    return f"Memory: {plan}", tooltip
