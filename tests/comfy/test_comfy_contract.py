"""The nodes' contracts: what saved workflows and ComfyUI's loader rely on, field by field."""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
from pathlib import Path

import img2vid
from img2vid.comfy import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS
from img2vid.comfy import nodes as nodes_module
from img2vid.comfy.legacy import SaltAIStableVideoDiffusion
from img2vid.comfy.nodes import Img2VidImageToVideo

ROOT = Path(__file__).resolve().parents[2]

#: The original node's declaration, as published by its authors.
ORIGINAL_REQUIRED = [
    ("image", ("IMAGE",)),
    ("api_key", ("STRING", {"multiline": False})),
    ("seed", ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF})),
    ("cfg", ("FLOAT", {"default": 2.5, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01})),
    ("mbi", ("INT", {"min": 1, "max": 255, "default": 40, "step": 1})),
]


def test_drop_in_node_declares_exactly_the_original_contract():
    declared = SaltAIStableVideoDiffusion.INPUT_TYPES()
    assert list(declared) == ["required"]  # no optional or hidden inputs: saved widget values line up
    assert list(declared["required"].items()) == ORIGINAL_REQUIRED
    for name, spec in ORIGINAL_REQUIRED:  # same types too: 0xffffffffffffffff stays an int, 2.5 a float
        for key, value in (spec[1] if len(spec) > 1 else {}).items():
            assert type(declared["required"][name][1][key]) is type(value), (name, key)
    assert SaltAIStableVideoDiffusion.RETURN_TYPES == ("IMAGE",)
    assert SaltAIStableVideoDiffusion.RETURN_NAMES == ("frames",)
    assert SaltAIStableVideoDiffusion.FUNCTION == "generate_video"
    assert SaltAIStableVideoDiffusion.CATEGORY == "SALT/API/Stability API"
    assert NODE_CLASS_MAPPINGS["SaltAIStableVideoDiffusion"] is SaltAIStableVideoDiffusion
    assert NODE_DISPLAY_NAME_MAPPINGS["SaltAIStableVideoDiffusion"] == "Stable Video Diffusion"


def test_drop_in_node_function_takes_the_inputs_comfyui_passes():
    params = inspect.signature(SaltAIStableVideoDiffusion.generate_video).parameters
    assert list(params)[1:] == [name for name, _ in ORIGINAL_REQUIRED]
    assert {n: p.default for n, p in params.items() if n in ("seed", "cfg", "mbi")} == {"seed": 0, "cfg": 2.5, "mbi": 40}


def test_own_node_has_no_key_widget_and_its_category():
    declared = Img2VidImageToVideo.INPUT_TYPES()
    names = [name for section in declared.values() for name in section]
    assert not [n for n in names if "key" in n.lower() or "token" in n.lower()]
    assert Img2VidImageToVideo.CATEGORY == "img2vid"
    assert Img2VidImageToVideo.RETURN_NAMES[:3] == ("frames", "fps", "frame_counts")
    assert Img2VidImageToVideo.RETURN_TYPES[:3] == ("IMAGE", "FLOAT", "INT")
    assert len(Img2VidImageToVideo.OUTPUT_IS_LIST) == len(Img2VidImageToVideo.RETURN_TYPES)
    assert NODE_CLASS_MAPPINGS["Img2VidImageToVideo"] is Img2VidImageToVideo
    # Every declared input is a keyword of the node's function (ComfyUI calls it with keywords).
    params = inspect.signature(getattr(Img2VidImageToVideo, Img2VidImageToVideo.FUNCTION)).parameters
    assert set(names) <= set(params)


def test_own_node_widget_defaults_are_valid_requests():
    declared = Img2VidImageToVideo.INPUT_TYPES()
    for section in ("required", "optional"):
        for name, spec in declared[section].items():
            if len(spec) < 2 or "default" not in spec[1]:
                continue
            options = spec[1]
            if isinstance(spec[0], list):
                assert options["default"] in spec[0], name
            elif "min" in options:
                assert options["min"] <= options["default"] <= options["max"], name


def test_repository_root_is_a_node_pack():
    spec = importlib.util.spec_from_file_location("img2vid_node_pack", ROOT / "__init__.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert set(module.NODE_CLASS_MAPPINGS) == {"SaltAIStableVideoDiffusion", "Img2VidImageToVideo"}
    assert set(module.NODE_DISPLAY_NAME_MAPPINGS) == set(module.NODE_CLASS_MAPPINGS)


def test_nodes_import_without_comfyui_and_without_heavy_libraries():
    src = str(Path(img2vid.__file__).resolve().parents[1])
    code = (
        "import sys\n"
        "import img2vid.comfy\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'transformers', 'fastapi', 'comfy'})\n"
        "print(','.join(heavy) or 'none')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={"PYTHONPATH": src}, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "none"


def _example(name: str) -> dict:
    return json.loads((ROOT / "example_workflows" / name).read_text())


def test_example_workflows_use_the_nodes_as_declared():
    for name, node_type in (
        ("saltai_stable_video_diffusion.json", "SaltAIStableVideoDiffusion"),
        ("img2vid_image_to_video.json", "Img2VidImageToVideo"),
        ("img2vid_wan.json", "Img2VidImageToVideo"),
        ("img2vid_ltx_video.json", "Img2VidImageToVideo"),
    ):
        workflow = _example(name)
        nodes = [n for n in workflow["nodes"] if n["type"] == node_type]
        assert len(nodes) == 1, name
        node = nodes[0]
        declared = NODE_CLASS_MAPPINGS[node_type].INPUT_TYPES()
        widgets = [
            n
            for section in ("required", "optional")
            for n, spec in declared.get(section, {}).items()
            if isinstance(spec[0], list) or spec[0] in ("INT", "FLOAT", "STRING", "BOOLEAN")
        ]
        # The frontend adds a "control after generate" value after each seed widget: randomize, so that
        # queueing the workflow again makes a new video.
        assert len(node["widgets_values"]) == len(widgets) + ("seed" in widgets), name
        assert node["widgets_values"][widgets.index("seed") + 1] == "randomize", name
        values, position = {}, 0
        for widget in widgets:
            values[widget] = node["widgets_values"][position]
            position += 2 if widget == "seed" else 1
        for section in ("required", "optional"):
            for widget, spec in declared.get(section, {}).items():
                if isinstance(spec[0], list):  # a saved choice ComfyUI would refuse is a broken example
                    assert values[widget] in spec[0], (name, widget)
        text = json.dumps(workflow)
        assert "sk-" not in text and "api_key\": \"" not in text
        link_ids = {link[0] for link in workflow["links"]}
        for other in workflow["nodes"]:
            for slot in other.get("inputs", []):
                assert slot.get("link") is None or slot["link"] in link_ids


def test_the_family_examples_use_short_names_a_prompt_and_the_models_defaults():
    from img2vid.families import FAMILIES

    declared = Img2VidImageToVideo.INPUT_TYPES()
    widgets = [n for section in ("required", "optional") for n, spec in declared[section].items() if spec[0] != "IMAGE"]
    for name, model in (("img2vid_wan.json", "wan2.2-ti2v-5b"), ("img2vid_ltx_video.json", "ltx-video")):
        (node,) = [n for n in _example(name)["nodes"] if n["type"] == "Img2VidImageToVideo"]
        saved = node["widgets_values"]
        values = dict(zip(widgets, saved[: widgets.index("seed") + 1] + saved[widgets.index("seed") + 2 :], strict=True))
        assert values["model"] == model and model in FAMILIES, name
        assert values["prompt"].strip() and values["negative_prompt"] == "", name  # the model's own negative prompt
        assert values["cfg_scale"] == 0 and values["frames"] == values["steps"] == values["fps"] == 0, name
        for svd_only, default in nodes_module.SVD_WIDGET_DEFAULTS.items():  # nothing a Wan/LTX model refuses
            assert values[svd_only] == default, (name, svd_only)
