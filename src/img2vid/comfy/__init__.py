"""ComfyUI nodes: the drop-in ``SaltAIStableVideoDiffusion`` and img2vid's own ``Image to Video``.

The repository root's ``__init__.py`` exports :func:`node_pack_exports`: the V3 ``comfy_entrypoint``
where the running ComfyUI has the V3 node API (``comfy_api.latest.io``), the V1 mappings elsewhere. Both
are built from one definition of each node (:mod:`.schema`) and run the same code. Importing this package
never needs ComfyUI: everything ComfyUI provides (progress bar, interrupt, VIDEO type, V3 API) is optional.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from . import legacy, nodes
from .legacy import SaltAIStableVideoDiffusion
from .nodes import Img2VidImageToVideo
from .schema import v3_node

__all__ = [
    "NODE_CLASS_MAPPINGS",
    "NODE_DISPLAY_NAME_MAPPINGS",
    "SaltAIStableVideoDiffusion",
    "Img2VidImageToVideo",
    "node_pack_exports",
    "check_requirements",
    "MissingRequirements",
    "v3_api",
    "v3_nodes",
]

NODE_CLASS_MAPPINGS: dict[str, type] = {
    "SaltAIStableVideoDiffusion": SaltAIStableVideoDiffusion,
    "Img2VidImageToVideo": Img2VidImageToVideo,
}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {
    "SaltAIStableVideoDiffusion": legacy.SPEC.display_name,
    "Img2VidImageToVideo": nodes.SPEC.display_name,
}


#: What the nodes import when they run (requirements.txt), module name to the package pip installs.
REQUIRED_MODULES = {"numpy": "numpy", "PIL": "pillow", "av": "av", "httpx": "httpx"}


class MissingRequirements(ImportError):
    """Packages the nodes need are not installed in the Python that runs ComfyUI."""

    def __init__(self, packages: list[str]) -> None:
        super().__init__("missing " + ", ".join(packages), name=packages[0])
        self.packages = packages


def check_requirements() -> None:
    """Fail at load, naming every missing package, rather than at a user's first run (the remote engine's
    httpx and the video codec's av are imported only then). Looks the modules up without importing them."""
    missing = [package for module, package in REQUIRED_MODULES.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise MissingRequirements(missing)


def v3_api() -> tuple[Any, type] | None:
    """``(io, ComfyExtension)`` from ``comfy_api.latest`` where this ComfyUI has the V3 node API."""
    try:
        from comfy_api.latest import ComfyExtension, io  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - no ComfyUI, or one from before the V3 API
        return None
    if not all(hasattr(io, name) for name in ("ComfyNode", "Schema", "NodeOutput", "Hidden")):
        return None
    return io, ComfyExtension


def v3_nodes(io: Any) -> list[type]:
    """Both nodes as V3 classes (same node ids, inputs and outputs as the V1 ones)."""
    return [
        v3_node(io, legacy.SaltAIStableVideoDiffusion, lambda: legacy.SPEC),
        v3_node(io, nodes.Img2VidImageToVideo, lambda: nodes.SPEC),
    ]


def node_pack_exports() -> dict[str, Any]:
    """What the node pack's root module exports: ``comfy_entrypoint`` (V3) or the V1 mappings, not both,
    since ComfyUI's loader reads the mappings first and would never see the V3 nodes."""
    check_requirements()
    api = v3_api()
    if api is None:
        return {"NODE_CLASS_MAPPINGS": NODE_CLASS_MAPPINGS, "NODE_DISPLAY_NAME_MAPPINGS": NODE_DISPLAY_NAME_MAPPINGS}
    io, extension_base = api
    node_list = v3_nodes(io)

    class Img2VidExtension(extension_base):  # type: ignore[misc, valid-type]
        """img2vid's nodes for ComfyUI's V3 loader."""

        async def get_node_list(self) -> list[type]:
            return list(node_list)

    async def comfy_entrypoint() -> Any:
        return Img2VidExtension()

    return {"comfy_entrypoint": comfy_entrypoint}
