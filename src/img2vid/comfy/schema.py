"""One definition of each node's inputs and outputs, rendered for ComfyUI's V1 and V3 node APIs.

A node declares its fields once, as :class:`NodeSpec`; :func:`v1_input_types` and :func:`v1_outputs` give
the V1 class attributes (``INPUT_TYPES``, ``RETURN_TYPES`` …) and :func:`v3_schema` builds the same node as
an ``io.Schema`` from ``comfy_api.latest``. The V3 classes themselves (:func:`v3_node`) run the V1 class's
function, so both APIs share one implementation.

Options use V1's names (``default``, ``min``, ``max``, ``step``, ``round``, ``multiline``, ``tooltip``);
a V1 declaration comes out exactly as written, which the drop-in node's saved workflows rely on. This
module must never import ComfyUI: the V3 ``io`` module is handed in by the caller.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .caching import seed_fingerprint

__all__ = ["Field", "Out", "NodeSpec", "SpecNode", "v1_input_types", "v1_outputs", "v3_schema", "v3_node"]

#: The V3 constructor keywords each kind takes, by their V1 option names.
_V3_OPTIONS = {
    "IMAGE": ("tooltip",),
    "INT": ("default", "min", "max", "step", "tooltip"),
    "FLOAT": ("default", "min", "max", "step", "round", "tooltip"),
    "STRING": ("default", "multiline", "tooltip"),
    "COMBO": ("default", "tooltip"),
}


@dataclass(frozen=True)
class Field:
    """One input: its name, kind (``IMAGE``, ``INT``, ``FLOAT``, ``STRING``, ``COMBO``) and options.

    ``choices`` is a combo's list, or a function returning it (read each time ComfyUI asks for the node's
    inputs, so new checkpoints show after a refresh, as with ComfyUI's own loaders).
    """

    name: str
    kind: str
    options: dict[str, Any] = field(default_factory=dict)
    choices: Sequence[str] | Callable[[], Sequence[str]] | None = None
    optional: bool = False

    def choice_list(self) -> list[str]:
        found = self.choices() if callable(self.choices) else self.choices
        return list(found or [])


@dataclass(frozen=True)
class Out:
    """One output: its name, kind, tooltip, and whether it holds one item per input image."""

    name: str
    kind: str
    tooltip: str
    is_list: bool = False


@dataclass(frozen=True)
class NodeSpec:
    """A node as ComfyUI sees it: id (the class name saved workflows name), inputs and outputs."""

    node_id: str
    display_name: str
    category: str
    description: str
    inputs: tuple[Field, ...]
    outputs: tuple[Out, ...]
    #: Whether the node's function takes ComfyUI's hidden ``unique_id`` (for its progress bar).
    wants_unique_id: bool = False


# ---------------------------------------------------------------------------------------------- V1


def _v1_input(spec: Field) -> tuple[Any, ...]:
    if spec.kind == "COMBO":
        return (spec.choice_list(), dict(spec.options))
    return (spec.kind, dict(spec.options)) if spec.options else (spec.kind,)


def v1_input_types(node: NodeSpec) -> dict[str, dict[str, Any]]:
    """``INPUT_TYPES()``: ``required``, then ``optional`` and ``hidden`` where the node has any."""
    declared: dict[str, dict[str, Any]] = {"required": {}}
    for spec in node.inputs:
        declared.setdefault("optional" if spec.optional else "required", {})[spec.name] = _v1_input(spec)
    if node.wants_unique_id:
        declared["hidden"] = {"unique_id": "UNIQUE_ID"}
    return declared


def v1_outputs(node: NodeSpec) -> dict[str, tuple[Any, ...]]:
    """``RETURN_TYPES``, ``RETURN_NAMES``, ``OUTPUT_IS_LIST`` and ``OUTPUT_TOOLTIPS``."""
    return {
        "RETURN_TYPES": tuple(o.kind for o in node.outputs),
        "RETURN_NAMES": tuple(o.name for o in node.outputs),
        "OUTPUT_IS_LIST": tuple(o.is_list for o in node.outputs),
        "OUTPUT_TOOLTIPS": tuple(o.tooltip for o in node.outputs),
    }



class SpecNode:
    """A V1 node class drawn from its ``SPEC``: ``INPUT_TYPES``, the output tuples, ``CATEGORY`` and
    ``DESCRIPTION`` are filled in from the one declaration when the subclass is made, so a node class holds
    only its ``SPEC``, its ``FUNCTION`` and that function. Every img2vid node takes a seed, so
    ``IS_CHANGED`` is here too: seed 0 is a new random seed each run and must not hand back the last video.
    """

    SPEC: ClassVar[NodeSpec]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name, value in v1_outputs(cls.SPEC).items():
            setattr(cls, name, value)
        cls.CATEGORY = cls.SPEC.category
        cls.DESCRIPTION = cls.SPEC.description

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:  # noqa: N802 - ComfyUI's name
        return v1_input_types(cls.SPEC)

    @classmethod
    def IS_CHANGED(cls, seed: Any = None, **_: Any) -> Any:  # noqa: N802 - ComfyUI's name
        return seed_fingerprint(seed)


# ---------------------------------------------------------------------------------------------- V3


def _v3_input(io: Any, spec: Field) -> Any:
    kind = {"IMAGE": io.Image, "INT": io.Int, "FLOAT": io.Float, "STRING": io.String, "COMBO": io.Combo}[spec.kind]
    options = {k: spec.options[k] for k in _V3_OPTIONS[spec.kind] if k in spec.options}
    if spec.kind == "COMBO":
        options["options"] = spec.choice_list()
    return kind.Input(spec.name, optional=spec.optional, **options)


def _v3_output(io: Any, out: Out) -> Any:
    kind = {"IMAGE": io.Image, "INT": io.Int, "FLOAT": io.Float, "VIDEO": io.Video}[out.kind]
    return kind.Output(out.name, display_name=out.name, tooltip=out.tooltip, is_output_list=out.is_list)


def v3_schema(node: NodeSpec, io: Any) -> Any:
    """The node as ``io.Schema``: the same ids, options and outputs as its V1 declaration."""
    return io.Schema(
        node_id=node.node_id,
        display_name=node.display_name,
        category=node.category,
        description=node.description,
        inputs=[_v3_input(io, spec) for spec in node.inputs],
        outputs=[_v3_output(io, out) for out in node.outputs],
        hidden=[io.Hidden.unique_id] if node.wants_unique_id else [],
    )


def v3_node(io: Any, v1_class: type, spec: Callable[[], NodeSpec]) -> type:
    """A V3 node class (``io.ComfyNode``) that runs ``v1_class``'s function and shares its checks.

    ``spec`` is called each time ComfyUI asks for the schema, like V1's ``INPUT_TYPES``.
    """

    def define_schema(cls: type) -> Any:
        return v3_schema(spec(), io)

    def execute(cls: Any, **inputs: Any) -> Any:
        if spec().wants_unique_id:
            hidden = getattr(cls, "hidden", None)
            inputs["unique_id"] = getattr(hidden, "unique_id", None)
        run = getattr(v1_class(), v1_class.FUNCTION)
        return io.NodeOutput(*run(**inputs))

    members: dict[str, Any] = {
        "__doc__": v1_class.__doc__,
        "__module__": v1_class.__module__,
        "define_schema": classmethod(define_schema),
        "execute": classmethod(execute),
    }
    if hasattr(v1_class, "IS_CHANGED"):
        members["fingerprint_inputs"] = classmethod(lambda cls, **inputs: v1_class.IS_CHANGED(**inputs))
    if hasattr(v1_class, "VALIDATE_INPUTS"):
        # ComfyUI reads the checked inputs' names from the signature, so the V1 function is used as it is.
        members["validate_inputs"] = classmethod(v1_class.VALIDATE_INPUTS.__func__)
    return type(v1_class.__name__, (io.ComfyNode,), members)
