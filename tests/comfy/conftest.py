"""The ComfyUI stand-in as a fixture for every node test in this folder (tests/support/comfy_stub.py)."""

from support.comfy_stub import comfy_stub

__all__ = ["comfy_stub"]
