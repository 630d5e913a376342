"""The local engine's speed and memory mode names: the one list the engine checks against and every front
door offers (the CLI's choices, the ComfyUI node's combos). Import-light (no torch), so listing the modes
never loads the engine."""

from __future__ import annotations

__all__ = ["SPEED_MODES", "MEMORY_MODES"]

#: ``eager``, ``compiled`` (the default on CUDA), ``fp8`` (compute capability 8.9+), ``fast`` (opt-in).
SPEED_MODES: tuple[str, ...] = ("eager", "compiled", "fp8", "fast")
#: ``auto`` (the default) or ``low``.
MEMORY_MODES: tuple[str, ...] = ("auto", "low")
