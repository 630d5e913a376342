"""What img2vid's node may name as ``model``, where each name runs, and which family it is.

The ``model`` combo lists, as ComfyUI's own loaders do, what this ComfyUI has (SVD checkpoints from its
``checkpoints`` folders, diffusers folders from its ``diffusers`` folders, found by their
``model_index.json`` as ComfyUI's diffusers loader finds them), the short names of the family table
(``wan2.2-ti2v-5b``, ``ltx-video``, ``svd-xt`` …, which a local engine downloads and an img2vid server may
serve), the configured server's own model names, and the tiny test models. Its first entry after the SVD
checkpoints, the SVD-XT hub id, is the neutral default: locally SVD-XT, on a server the server's default.

The server's names come from its ``GET /info`` (``models``, each with a ``name``), read in a background
thread and cached: listing the node's inputs happens when ComfyUI registers the node and whenever the page
loads, and must never wait on a slow or absent server. Names a server lists that are not in the combo
(another server, a list not read yet) can still be given through ComfyUI's API: the node then accepts any
plain name for the remote engine, and the server says whether it has it.

Knowing a name's family here (without torch) lets the node leave SVD's own widgets out of a Wan or
LTX-Video request. This module must never import torch or ComfyUI at import time, never send a key with
the model lookup, and never let the lookup fail or block the node.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import ENV_BASE_URL, is_stability_url, load_config, mask_url_password
from ..errors import ModelError
from ..families import FAMILIES, SHORT_NAMES, SVD, TINY_PREFIX, Family, family_for_short_name
from ..model_names import TINY_NAME, family_of_folder, is_hub_id

__all__ = [
    "HUB_DEFAULT",
    "TINY_NAME",
    "ModelChoice",
    "model_choices",
    "short_names",
    "tiny_names",
    "checkpoint_names",
    "diffusers_names",
    "resolve_choice",
    "is_local_model_name",
    "is_server_model_name",
    "server_models",
    "read_server_models",
    "SERVER_MODELS_TTL",
    "INFO_TIMEOUT",
]

log = logging.getLogger("img2vid.comfy")

#: The local engine's default model (SVD-XT on the hub), from the family table as the engine takes it.
HUB_DEFAULT = SVD.hub_repo

#: How a checkpoint file's name says it is Stable Video Diffusion (svd.safetensors, svd_xt_1_1.safetensors …).
_SVD_NAME = re.compile(r"svd|stable[-_ ]?video", re.IGNORECASE)
#: A server's model name worth listing: printable, short, no path tricks for a combo entry.
_SERVER_NAME = re.compile(r"^[\w./:@+-][\w ./:@+-]{0,199}$")


def short_names() -> list[str]:
    """The family table's short names: SVD's releases first, then the other families in table order."""
    svd = [name for name, (_, family) in SHORT_NAMES.items() if family.kind == "svd"]
    return svd + [name for name in SHORT_NAMES if name not in svd]


def tiny_names() -> list[str]:
    """``tiny`` (SVD) and ``tiny-<family>`` for each text-conditioned family: random, offline, noise."""
    return [TINY_NAME] + [TINY_PREFIX + key for key, family in FAMILIES.items() if family.kind != "svd"]


def _folder_paths() -> Any | None:
    try:
        import folder_paths  # type: ignore[import-not-found]
    except Exception:  # noqa: BLE001 - outside ComfyUI
        return None
    return folder_paths


def checkpoint_names() -> list[str]:
    """The files of ComfyUI's ``checkpoints`` folders, as its own loaders list them."""
    paths = _folder_paths()
    try:
        return [str(n) for n in paths.get_filename_list("checkpoints")] if paths is not None else []
    except Exception:  # noqa: BLE001 - a setup without a checkpoints folder
        return []


def _diffusers_roots() -> list[str]:
    paths = _folder_paths()
    if paths is None:
        return []
    try:
        return [str(p) for p in paths.get_folder_paths("diffusers")]
    except Exception:  # noqa: BLE001 - an older ComfyUI, or no diffusers folder registered
        return []


def diffusers_names() -> list[str]:
    """The diffusers folders under ComfyUI's ``diffusers`` folders (those holding a ``model_index.json``),
    relative to their root, as ComfyUI's own diffusers loader lists them. ComfyUI registers that folder
    with the pseudo-extension ``folder``, so ``get_filename_list`` would list no folder at all; a model
    folder's own subfolders (gigabytes of weights) are not walked."""
    found: set[str] = set()
    for root in _diffusers_roots():
        if not os.path.isdir(root):
            continue
        for current, dirs, files in os.walk(root, followlinks=True):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if "model_index.json" in files:
                name = os.path.relpath(current, root)
                if name != ".":
                    found.add(name)
                dirs[:] = []
    return sorted(found)


def _diffusers_folder(name: str) -> Path | None:
    """The full path of a listed diffusers folder (the first root that has it, as ComfyUI's loader)."""
    if not name or os.path.isabs(name) or ".." in Path(name).parts:
        return None
    for root in _diffusers_roots():
        folder = Path(root) / name
        if (folder / "model_index.json").is_file():
            return folder
    return None


def _checkpoint_file(name: str) -> str | None:
    paths = _folder_paths()
    if paths is None:
        return None
    try:
        found = paths.get_full_path("checkpoints", name)
    except Exception:  # noqa: BLE001 - an unknown folder name in an unusual ComfyUI setup
        return None
    return str(found) if found else None


def _folder_family(folder: Path) -> Family | None:
    """A diffusers folder's family, read as the engine reads it; ``None`` where the index names a pipeline
    img2vid does not run (the engine then gives its own error when the node runs it)."""
    try:
        return family_of_folder(folder, str(folder))
    except ModelError:
        return None


# ------------------------------------------------------------------------------------- the server's list

#: How long a server's model list is used before it is read again; how long one read may take.
SERVER_MODELS_TTL = 300.0
INFO_TIMEOUT = 2.0


def read_server_models(base_url: str, *, transport: Any = None, timeout: float = INFO_TIMEOUT) -> list[str]:
    """The model names a server's ``GET /info`` lists under ``models`` (each ``{"name": ...}``), or ``[]``
    when it lists none (an older server: its default model, the combo's default entry, is the one it has)
    or cannot be reached. Never raises; never sends a key (``/info`` needs none)."""
    try:
        import httpx

        with httpx.Client(transport=transport, timeout=timeout) as client:
            response = client.get(base_url.rstrip("/") + "/info", headers={"accept": "application/json"})
        if response.status_code != 200:
            return []
        listed = response.json().get("models")
    except Exception as exc:  # noqa: BLE001 - a model list is a convenience, never a failure
        log.debug("img2vid: no model list from %s (%s)", mask_url_password(base_url), type(exc).__name__)
        return []
    names: list[str] = []
    for entry in listed if isinstance(listed, list) else []:
        name = entry.get("name") if isinstance(entry, dict) else entry
        if isinstance(name, str) and _SERVER_NAME.match(name.strip()) and name.strip() not in names:
            names.append(name.strip())
    return names


class _ServerModelCache:
    """Each server's model list, read in a background thread: :meth:`names` answers at once with what is
    known (nothing, the first time) and starts a read when the list is missing or older than the TTL."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._known: dict[str, tuple[float, list[str]]] = {}
        self._reading: set[str] = set()
        #: The reader (tests replace it) and the clock.
        self.read: Callable[[str], list[str]] = read_server_models
        self.clock: Callable[[], float] = time.monotonic

    def names(self, base_url: str) -> list[str]:
        with self._lock:
            known = self._known.get(base_url)
            stale = known is None or self.clock() - known[0] >= SERVER_MODELS_TTL
            if stale and base_url not in self._reading:
                self._reading.add(base_url)
                threading.Thread(target=self._refresh, args=(base_url,), name="img2vid-models", daemon=True).start()
            return list(known[1]) if known is not None else []

    def _refresh(self, base_url: str) -> None:
        try:
            names = self.read(base_url)
        except Exception:  # noqa: BLE001 - a reader that raises is a server with no list
            names = []
        with self._lock:
            self._known[base_url] = (self.clock(), names)
            self._reading.discard(base_url)

    def clear(self) -> None:
        with self._lock:
            self._known.clear()


SERVER_MODELS = _ServerModelCache()


def _configured_server() -> str | None:
    """The server set in ``IMG2VID_BASE_URL`` or the config file (not Stability's, which has one model)."""
    try:
        configured = os.environ.get(ENV_BASE_URL, "").strip() or load_config().get("base_url")
    except Exception:  # noqa: BLE001 - a broken config file is reported when a node runs, not here
        return None
    if not isinstance(configured, str) or not configured.strip().startswith(("http://", "https://")):
        return None
    url = configured.strip().rstrip("/")
    return None if is_stability_url(url) else url


def server_models() -> list[str]:
    """The configured server's model names as far as known now (never waits; see the module's note)."""
    url = _configured_server()
    return SERVER_MODELS.names(url) if url is not None else []


# ------------------------------------------------------------------------------------------- the combo


def _is_svd_checkpoint(name: str) -> bool:
    return bool(_SVD_NAME.search(name.replace("\\", "/").rsplit("/", 1)[-1]))


def model_choices(*, with_server: bool = True) -> list[str]:
    """The ``model`` combo: this ComfyUI's SVD checkpoints, the default, the short names, this ComfyUI's
    diffusers folders, its other checkpoints, the configured server's other names, then the tiny models.
    Read each time ComfyUI asks for the node's inputs, so new files show after a refresh."""
    checkpoints = checkpoint_names()
    svd = [n for n in checkpoints if _is_svd_checkpoint(n)]
    listed = svd + [HUB_DEFAULT] + short_names() + diffusers_names() + [n for n in checkpoints if n not in svd]
    if with_server:
        listed += server_models()
    listed += tiny_names()
    seen: set[str] = set()
    return [n for n in listed if not (n in seen or seen.add(n))]


@dataclass(frozen=True)
class ModelChoice:
    """What a ``model`` value names: the default, a file or folder of this ComfyUI's, or a name."""

    #: The value as given (stripped); empty for the default entry.
    name: str
    #: The default entry: SVD-XT locally, the server's default remotely.
    is_default: bool
    #: The full path of a checkpoint file or diffusers folder from ComfyUI's model folders (local only).
    local_path: str | None
    #: Where known without loading anything: the family, for each engine.
    local_family: Family | None
    remote_family: Family | None

    @property
    def local_model(self) -> str | None:
        """What the local engine is given (``None``: its default model)."""
        if self.is_default:
            return HUB_DEFAULT if self.name else None
        return self.local_path or self.name

    @property
    def server_model(self) -> str | None:
        """What a server is asked for (``None``: its default)."""
        return None if self.is_default else self.name

    @property
    def only_local(self) -> bool:
        """A file or folder of this ComfyUI's (or a path here) that is no name a server could have."""
        return self.local_path is not None and self.remote_family is None


def _named_family(name: str) -> Family | None:
    """The family a name says without any file: a short name, a tiny model, an official hub id."""
    lowered = name.lower()
    if lowered == TINY_NAME:
        return SVD
    if lowered.startswith(TINY_PREFIX) and lowered[len(TINY_PREFIX) :] in FAMILIES:
        return FAMILIES[lowered[len(TINY_PREFIX) :]]
    short = family_for_short_name(name)
    if short is not None:
        return short[1]
    known = {repo.lower(): family for repo, family in SHORT_NAMES.values()}
    return known.get(lowered)


def resolve_choice(model: str | None) -> ModelChoice:
    """A ``model`` widget value resolved against this ComfyUI's folders (nothing is loaded or fetched).

    A file or folder of this ComfyUI's wins locally over a short name of the same spelling (the user's own
    copy); a server is still asked for the name."""
    name = (model or "").strip()
    if not name or name == HUB_DEFAULT:
        return ModelChoice(name, True, None, SVD, None)
    named = _named_family(name)
    folder = _diffusers_folder(name)
    if folder is not None:
        return ModelChoice(name, False, str(folder), _folder_family(folder), named)
    checkpoint = _checkpoint_file(name)
    if checkpoint is not None:
        return ModelChoice(name, False, checkpoint, SVD, named)
    if named is None and not is_hub_id(name):
        path = Path(name).expanduser()
        if path.exists():  # a path on this machine, given through the API
            return ModelChoice(name, False, str(path), _folder_family(path) if path.is_dir() else SVD, None)
    return ModelChoice(name, False, None, named, named)


def is_local_model_name(name: str) -> bool:
    """Whether the local engine can be given ``name``: a listed entry, a hub id, or a path that exists."""
    if name in ("", TINY_NAME, HUB_DEFAULT) or is_hub_id(name) or _named_family(name) is not None:
        return True
    return name in model_choices(with_server=False) or Path(name).expanduser().exists()


def is_server_model_name(name: str) -> bool:
    """Whether ``name`` can name a server's model: plain, printable text (the server says if it has it)."""
    return bool(_SERVER_NAME.match(name))
