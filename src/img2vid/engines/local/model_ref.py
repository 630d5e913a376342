"""What a ``--model`` value names: which family, and where its weights are (before any weight is read).

A model is ``tiny`` or ``tiny-<family>`` (random test models), a short name (``wan2.2-ti2v-5b``), a
diffusers folder (the family read from its ``model_index.json``), a single-file SVD checkpoint, or a hub
id. Knowing the family this early lets a front door refuse a field the model does not take, or a frame
count it cannot make, before minutes of loading. Only a hub id outside the short-name table leaves the
family open (``None``) until its index is downloaded. Nothing here loads a model or touches the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import ModelError
from ...families import SHORT_NAMES, SVD, Family, families_text, family_for_pipeline, family_for_short_name
from .family_model import read_model_index
from .models import TINY_NAME, describe_model
from .tiny_families import TINY_FAMILY_NAMES

__all__ = ["ModelRef", "identify_model", "family_of_folder"]


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
    """The :class:`ModelRef` for a ``--model`` value (already stripped)."""
    if model == TINY_NAME:
        return ModelRef(model, "tiny", model, SVD)
    if model.lower() in TINY_FAMILY_NAMES:
        return ModelRef(model, "tiny", model.lower(), TINY_FAMILY_NAMES[model.lower()])
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
