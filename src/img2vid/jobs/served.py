"""The models a deployment serves, by name: ``--model NAME=SOURCE``, read once for the server and workers.

One img2vid deployment may serve SVD, Wan and LTX-Video side by side. Each served model has a name (what
a client's ``model`` form field says, what a worker announces, what a job row records) and a source
(anything ``--model`` takes: a short name, a folder, a checkpoint, a hub id, ``tiny-*``). The first is the
default, for a request that names none. A front end that holds no model (``--dispatch celery``) reads the
families from here too, without loading any weight: the name decides the rules before a job exists.

This module must never import torch or load a model; it only names them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import InvalidInputError
from ..families import SHORT_NAMES, SVD, Family
from ..fitting import PROTOCOL_SIZES, SizeRule
from ..model_names import identify_model

__all__ = [
    "ServedModel",
    "parse_served",
    "default_name",
    "claim_names",
    "find_served",
    "protocol_sizes_bind",
    "upload_sizes",
    "MODEL_NAME_RULE",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
MODEL_NAME_RULE = "a name of letters, digits, '.', '_' or '-' (at most 100, starting with a letter or digit)"


@dataclass(frozen=True)
class ServedModel:
    """A model the deployment serves: its name, its source, and its family (None: a custom engine's, or a
    hub id whose family is read when a worker loads it)."""

    name: str
    source: str
    family: Family | None

    @property
    def takes_svd_jobs(self) -> bool:
        """Whether jobs from before model names (all SVD jobs, ``model = ''``) may run on it."""
        return self.family is None or self.family.kind == "svd"


def default_name(source: str) -> str:
    """The name a model is served under when ``--model`` gives no ``NAME=``: a short or tiny name as it is,
    an official repository by its short name, a folder by its name, a checkpoint by its stem, another hub
    id by its repository's name."""
    text = source.strip()
    ref = identify_model(text)
    if ref.kind == "tiny" or text.lower() in SHORT_NAMES:
        return text.lower()
    short = {repo.lower(): name for name, (repo, _) in SHORT_NAMES.items()}
    if text.lower() in short:
        return short[text.lower()]
    path = Path(text).expanduser()
    if ref.kind == "checkpoint":
        return _safe(path.stem)
    if ref.kind in ("folder", "path"):
        return _safe(path.name or text)
    return _safe(text.rsplit("/", 1)[-1])


def _safe(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-._") or "model"
    return cleaned[:100]


def parse_served(specs: Iterable[str], *, default_source: str, custom_engine: bool = False) -> list[ServedModel]:
    """``NAME=SOURCE`` (or ``SOURCE``) options as served models, in order; none given: the default source.

    With a custom engine factory the sources are names only: their families are still read where the name
    says (a short name, a tiny model), so a request is checked against the right rules.
    """
    served: list[ServedModel] = []
    for spec in [s for s in specs if s and s.strip()] or [default_source]:
        name, sep, source = spec.strip().partition("=")
        if not sep:
            name, source = "", name
        source = source.strip()
        if not source:
            raise InvalidInputError.for_field("model", spec, "NAME=SOURCE or SOURCE, SOURCE a model --model takes")
        name = name.strip() or default_name(source)
        if not _NAME.fullmatch(name):
            raise InvalidInputError.for_field("model", name, MODEL_NAME_RULE)
        if any(model.name == name for model in served):
            raise InvalidInputError(
                f"model: {name!r} is served twice; give each --model its own NAME=", field="model", value=name, allowed="distinct names"
            )
        try:
            family = identify_model(source).family
        except Exception:  # noqa: BLE001 - a custom engine's name need not be a model img2vid knows
            if not custom_engine:
                raise
            family = None
        served.append(ServedModel(name=name, source=source, family=family))
    return served


def claim_names(models: Sequence[ServedModel]) -> list[str]:
    """The job ``model`` values a holder of ``models`` claims: their names, and ``''`` (jobs from before
    model names, all SVD) when one of them is an SVD model."""
    names = [model.name for model in models]
    if any(model.takes_svd_jobs for model in models):
        names.append("")
    return names


def find_served(models: Sequence[ServedModel], name: str | None) -> ServedModel:
    """The served model a request names (``None`` or empty: the default, the first), or a 400 listing them."""
    if name is None or not name.strip():
        return models[0]
    for model in models:
        if model.name == name.strip():
            return model
    listed = ", ".join(model.name for model in models)
    raise InvalidInputError(
        f"model {name.strip()!r} is not served here; this server serves {listed}",
        field="model",
        value=name,
        allowed=f"one of {listed}",
    )


def protocol_sizes_bind(family: Family | None, *, any_size: bool) -> bool:
    """Whether an upload for a model of ``family`` must be one of the protocol's three sizes: so for SVD
    (and a custom engine's model, held to SVD's rules) unless the server takes any size; another family
    takes any size, which its engine fits to its own rule."""
    return (family is None or family.kind == "svd") and not any_size


def upload_sizes(family: Family | None, *, any_size: bool) -> SizeRule:
    """The sizes a model of ``family`` is fed at on this server: the protocol's three where they bind,
    else the family's own rule (what /info states, and what /fit-plan plans to)."""
    return PROTOCOL_SIZES if protocol_sizes_bind(family, any_size=any_size) else (family or SVD).size_rule
