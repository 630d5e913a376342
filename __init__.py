"""ComfyUI entry point: ComfyUI imports this file when the repository sits in ``custom_nodes``.

It makes the ``img2vid`` package importable from ``src/`` when it is not pip-installed, then exports the
node mappings. Importing it outside ComfyUI never fails: without the nodes' needs the mappings are empty
and the reason is logged once.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_SRC = Path(__file__).resolve().parent / "src"
if _SRC.is_dir() and str(_SRC) not in sys.path:
    sys.path.insert(0, str(_SRC))

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

try:
    from img2vid.comfy import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: F811
except ImportError as exc:  # pragma: no cover - depends on the host's packages
    logging.getLogger("img2vid").warning("img2vid nodes not loaded: %s (pip install -r requirements.txt)", exc)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
