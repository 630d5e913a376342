"""ComfyUI entry point: ComfyUI imports this file when the repository sits in ``custom_nodes``.

It makes the ``img2vid`` package importable from ``src/`` when it is not pip-installed, then exports the
nodes: ``comfy_entrypoint`` where the running ComfyUI has the V3 node API, the V1 mappings elsewhere
(ComfyUI reads the mappings first, so only one of the two is ever exported).

Whatever the folder is called. ComfyUI's loader before April 2025 (and other loaders) imports this file
as a module named after its folder, so a clone into ``custom_nodes/img2vid`` makes this file the module
``img2vid``, standing where the package must be; it then steps aside before the package is imported.

It must never raise: when the nodes cannot load (a missing package, an old Python), it logs one line
that names the cause and what to do, and exports nothing, so ComfyUI lists the pack as IMPORT FAILED
instead of showing no nodes without a word.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
_SRC = _HERE / "src"
_log = logging.getLogger("img2vid")


def _load_node_pack() -> dict:
    """The names to export, from ``img2vid.comfy``, whatever name this module was given."""
    if sys.version_info < (3, 10):  # noqa: UP036 - a ComfyUI on 3.9 still imports this file: tell its user why
        raise RuntimeError(f"img2vid needs Python 3.10 or newer; this ComfyUI runs Python {sys.version.split()[0]}")
    if _SRC.is_dir():
        path = str(_SRC)
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)  # first, so that no folder called img2vid elsewhere on the path wins
    this = sys.modules.get(__name__)
    if this is not None and sys.modules.get("img2vid") is this:
        del sys.modules["img2vid"]  # this file was imported as ``img2vid``: make room for the package

    import importlib

    return importlib.import_module("img2vid.comfy").node_pack_exports()


def _why_not(exc: BaseException) -> str:
    """One line for ComfyUI's log: what is wrong and what to do."""
    python = sys.executable or "python"
    if isinstance(exc, ImportError) and exc.name and not exc.name.startswith("img2vid"):
        packages = getattr(exc, "packages", None) or [exc.name.split(".")[0]]
        what = f"the package {packages[0]} is" if len(packages) == 1 else f"the packages {', '.join(packages)} are"
        return (
            f"img2vid: nodes not loaded: {what} missing from the Python that runs ComfyUI; "
            f"install the node pack's requirements: {python} -m pip install -r {_HERE / 'requirements.txt'}"
        )
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"img2vid: nodes not loaded: {text} ({type(exc).__name__}; Python {sys.version.split()[0]}, {_HERE})"


try:
    _exports = _load_node_pack()
except Exception as _exc:  # noqa: BLE001 - whatever it is, ComfyUI must go on loading other packs
    _log.warning(_why_not(_exc))
    __all__: list[str] = []
else:
    globals().update(_exports)
    __all__ = sorted(_exports)
