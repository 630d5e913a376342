"""What a model name means, before any weight is read: which family, and where the weights are.

A model is ``tiny`` or ``tiny-<family>`` (random test models), a short name (``wan2.2-ti2v-5b``), a
diffusers folder (the family read from its ``model_index.json``), a single-file SVD checkpoint, or a hub
id. Knowing the family this early lets every front door refuse a field the model does not take, or a
frame count it cannot make, before minutes of loading, and lets a front end that holds no model (a Celery
front end) know the rules of the models its workers hold. Only a hub id outside the short-name table
leaves the family open (``None``) until its index is downloaded.

Part of the light core: this module must never import torch, diffusers or anything heavy, and never
touches the network.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

from .errors import ModelError
from .families import SHORT_NAMES, SVD, TINY_FAMILIES, Family, families_text, family_for_pipeline, family_for_short_name

__all__ = ["ModelRef", "identify_model", "family_of_folder", "read_model_index", "describe_model", "is_hub_id", "TINY_NAME"]

#: SVD's tiny random model (``tiny-<family>`` names the others).
TINY_NAME = "tiny"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelRef:
    """A model name resolved: how to load it and, where known, its family."""

    #: The name as given (for messages and the shared-engine key).
    name: str
    #: ``tiny``, ``folder``, ``checkpoint``, ``hub`` or ``path`` (a path that does not exist).
    kind: str
    #: The folder, file or hub repository to load from.
    location: str
    #: ``None`` only for a hub id outside the short-name table, until its index is read.
    family: Family | None


def is_hub_id(name: str) -> bool:
    """Whether a name has a hub id's shape (``owner/repo``), whatever is on disk."""
    return bool(_HUB_ID.match(name)) and not name.startswith((".", "~", "/"))


def describe_model(model: str) -> str:
    """What kind of model name this is: ``tiny``, ``folder``, ``checkpoint``, ``hub`` or ``path``."""
    if model == TINY_NAME:
        return "tiny"
    path = Path(model).expanduser()
    if path.is_dir():
        return "folder"
    if path.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".pth", ".bin") or path.is_file():
        return "checkpoint"
    if is_hub_id(model):
        return "hub"
    return "path"


def read_model_index(folder: Path) -> tuple[str | None, dict[str, Any], list[str]]:
    """(pipeline class, the index's settings, the components it holds) from a diffusers folder's
    ``model_index.json``; a missing or broken index is (None, {}, [])."""
    try:
        parsed: object = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError):
        return None, {}, []
    if not isinstance(parsed, dict):
        return None, {}, []
    index = cast("dict[str, Any]", parsed)  # JSON objects have string keys
    components = [k for k, v in index.items() if isinstance(v, list) and len(cast("list[Any]", v)) == 2 and cast("list[Any]", v)[0] is not None]
    settings = {k: v for k, v in index.items() if not k.startswith("_") and not isinstance(v, list)}
    name = index.get("_class_name")
    return (name if isinstance(name, str) else None), settings, components


def family_of_folder(folder: Path, source: str) -> Family:
    """The family of a diffusers folder; a folder without an index is taken as SVD (its loader then says
    which subfolders are missing), and an index of another pipeline is a clear refusal."""
    class_name, settings, components = read_model_index(folder)
    if class_name is None:
        return SVD
    family = family_for_pipeline(class_name, settings, components)
    if family is None:
        raise ModelError(
            f"{source} holds a {class_name}, which img2vid does not run: it runs image-to-video models of these "
            f"families: {families_text()}"
        )
    return family


def identify_model(model: str) -> ModelRef:
    """The :class:`ModelRef` for a model name (surrounding spaces ignored)."""
    model = model.strip()
    tiny = TINY_FAMILIES.get(model.lower())
    if tiny is not None:
        return ModelRef(model, "tiny", model.lower(), tiny)
    short = family_for_short_name(model)
    if short is not None and not Path(model).expanduser().exists():
        repo, family = short
        return ModelRef(model, "hub", repo, family)
    kind = describe_model(model)
    if kind == "folder":
        return ModelRef(model, kind, model, family_of_folder(Path(model).expanduser(), model))
    if kind == "checkpoint":
        return ModelRef(model, kind, model, SVD)
    if kind == "hub":
        known = {repo.lower(): family for repo, family in SHORT_NAMES.values()}
        return ModelRef(model, kind, model, known.get(model.lower()))
    return ModelRef(model, kind, model, None)
