"""ComfyUI nodes. The mappings fill in as the nodes land; importing this never needs ComfyUI."""

from __future__ import annotations

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
