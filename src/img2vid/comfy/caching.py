"""What ComfyUI compares to decide whether a node runs again or hands back its cached output.

ComfyUI calls a node's ``IS_CHANGED`` (V3: ``fingerprint_inputs``) with the widget values of the queued
prompt before it runs anything, and re-runs the node only when the answer differs from the last run's.
Without it, re-queueing an unchanged workflow returns the cached video, which is wrong for seed 0: seed 0
asks for a new random seed on every run. This module must stay free of ComfyUI imports.
"""

from __future__ import annotations

from typing import Any

__all__ = ["seed_fingerprint"]


def seed_fingerprint(seed: Any) -> Any:
    """Seed 0: NaN, which equals nothing, not even itself, so ComfyUI always runs the node. Any other
    seed: the seed, so an unchanged workflow with a fixed seed stays cached.

    A seed that comes through a link is not known yet (ComfyUI passes ``None``); the linked node's own
    inputs are part of ComfyUI's cache key then, so the answer is the same constant each time.
    """
    if seed is None:
        return None
    return float("nan") if int(seed) == 0 else int(seed)
