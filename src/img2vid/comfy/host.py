"""The one lookup of ComfyUI's ``comfy.model_management``, for every img2vid module that needs it.

The nodes use it for the Cancel button (the interrupt flag), for the device ComfyUI runs its models on,
and for its memory management (:mod:`.memory`). It is looked up each time it is needed, never at import,
so the nodes import and run without ComfyUI; this module must never import ComfyUI or torch at import.
"""

from __future__ import annotations

from typing import Any

__all__ = ["model_management"]


def model_management() -> Any | None:
    """ComfyUI's ``comfy.model_management`` module, or ``None`` outside ComfyUI (or in a broken one)."""
    try:
        import comfy.model_management as mm  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - no ComfyUI, or one whose module fails to import: run without it
        return None
    return mm
