"""The nodes through ComfyUI's V3 node API: the same node ids, inputs, outputs and checks as V1, from one
definition, running the same function."""

from __future__ import annotations

import inspect
import sys

import pytest

from img2vid.comfy import NODE_CLASS_MAPPINGS, node_pack_exports, v3_nodes
from img2vid.comfy import nodes as nodes_module
from support.comfy_stub import install


@pytest.fixture
def io(monkeypatch):
    stub = install(with_v3=True)
    for name, module in stub.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return stub.modules["comfy_api.latest"].io


def _as_v1(declared: dict) -> dict:
    """A V1 declaration in the form ComfyUI derives from a V3 schema (combos as COMBO, hidden as tuples)."""
    out: dict = {}
    for section, fields in declared.items():
        for name, spec in fields.items():
            if section == "hidden":
                spec = (spec,)
            elif isinstance(spec[0], list):
                spec = ("COMBO", {**spec[1], "options": spec[0]})
            elif len(spec) == 1:
                spec = (spec[0], {})
            out.setdefault(section, {})[name] = spec
    return out


@pytest.mark.parametrize("node_id", ["SaltAIStableVideoDiffusion", "Img2VidImageToVideo"])
def test_v3_nodes_declare_what_the_v1_nodes_declare(io, node_id):
    v1 = NODE_CLASS_MAPPINGS[node_id]
    (v3,) = [c for c in v3_nodes(io) if c.__name__ == node_id]
    schema = v3.GET_SCHEMA()

    assert issubclass(v3, io.ComfyNode) and schema.node_id == node_id
    assert schema.category == v1.CATEGORY and schema.description == v1.DESCRIPTION
    assert v3.INPUT_TYPES() == _as_v1(v1.INPUT_TYPES())
    assert list(v3.INPUT_TYPES()["required"]) == list(
        v1.INPUT_TYPES()["required"]
    )  # widget order: saved values line up
    assert tuple(o.io_type for o in schema.outputs) == v1.RETURN_TYPES
    assert tuple(o.display_name for o in schema.outputs) == v1.RETURN_NAMES
    assert tuple(o.is_output_list for o in schema.outputs) == getattr(
        v1, "OUTPUT_IS_LIST", (False,) * len(v1.RETURN_TYPES)
    )


def test_v3_runs_the_v1_function_with_the_hidden_node_id(io, monkeypatch):
    seen = {}

    def generate(self, **inputs):
        seen.update(inputs)
        return ("frames", 6.0, [2])

    monkeypatch.setattr(nodes_module.Img2VidImageToVideo, "generate", generate)
    (v3,) = [c for c in v3_nodes(io) if c.__name__ == "Img2VidImageToVideo"]

    output = v3.PREPARE_CLASS_CLONE({"UNIQUE_ID": "12"}).EXECUTE_NORMALIZED(image="pixels", seed=3)

    assert output.args == ("frames", 6.0, [2])
    assert seen == {"image": "pixels", "seed": 3, "unique_id": "12"}


def test_v3_checks_the_model_as_v1_does(io):
    (v3,) = [c for c in v3_nodes(io) if c.__name__ == "Img2VidImageToVideo"]
    # ComfyUI reads which inputs the node checks itself from the function's arguments.
    assert "model" in inspect.getfullargspec(v3.validate_inputs).args
    assert v3.validate_inputs(model=nodes_module.HUB_DEFAULT) is True
    assert v3.validate_inputs(model="nowhere.safetensors") == nodes_module.Img2VidImageToVideo.VALIDATE_INPUTS(
        model="nowhere.safetensors"
    )


def test_the_pack_exports_v3_or_v1_never_both(io, monkeypatch):
    exported = node_pack_exports()
    assert set(exported) == {"comfy_entrypoint"}  # ComfyUI reads V1 mappings first: exporting both hides V3

    monkeypatch.setitem(sys.modules, "comfy_api.latest", None)  # a ComfyUI from before the V3 API
    assert set(node_pack_exports()) == {"NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"}
