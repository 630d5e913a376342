"""ComfyUI nodes: the drop-in ``SaltAIStableVideoDiffusion`` and img2vid's own ``Image to Video``.

The repository root's ``__init__.py`` re-exports these mappings for ComfyUI. Importing this package never
needs ComfyUI: everything ComfyUI provides (progress bar, interrupt, VIDEO type) is optional.
"""

from __future__ import annotations

from .legacy import SaltAIStableVideoDiffusion
from .nodes import Img2VidImageToVideo

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "SaltAIStableVideoDiffusion", "Img2VidImageToVideo"]

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "SaltAIStableVideoDiffusion": SaltAIStableVideoDiffusion,
    "Img2VidImageToVideo": Img2VidImageToVideo,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "SaltAIStableVideoDiffusion": "Stable Video Diffusion",
    "Img2VidImageToVideo": "Image to Video (img2vid)",
}
