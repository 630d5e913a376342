"""Which engine img2vid's node runs for its engine, server and model widgets."""

from __future__ import annotations

import sys

import pytest

import img2vid.comfy.nodes as nodes
from img2vid.comfy.runtime import NodeError


@pytest.fixture
def chosen(monkeypatch):
    calls = []

    def fake_choose_engine(engine=None, model=None, **options):
        calls.append((engine, model, options))
        return object()

    monkeypatch.setattr(nodes, "choose_engine", fake_choose_engine)
    return calls


@pytest.fixture
def checkpoints(comfy_stub, tmp_path):
    """ComfyUI's folder_paths, with svd_xt.safetensors in the checkpoints folder."""
    path = tmp_path / "checkpoints" / "svd_xt.safetensors"
    path.parent.mkdir()
    path.write_bytes(b"")
    comfy_stub.modules["folder_paths"].add_model_folder_path("checkpoints", str(path.parent))
    return path


def test_remote_with_no_server_uses_the_configured_one(chosen, monkeypatch):
    monkeypatch.setenv("IMG2VID_BASE_URL", "http://gpu-box:8000/")
    nodes.choose_node_engine("remote", "", "")
    assert chosen == [("http://gpu-box:8000", None, {"server_model": None})]


def test_remote_with_a_server_or_stability(chosen):
    nodes.choose_node_engine("remote", " http://10.0.0.2:8000 ", "a-model-of-the-server")  # sent as a form field
    nodes.choose_node_engine("auto", "stability", "")
    assert [c[:2] for c in chosen] == [("http://10.0.0.2:8000", None), ("stability", None)]


def test_a_checkpoint_from_comfyui_runs_locally_on_comfyui_device(chosen, comfy_stub, checkpoints):
    nodes.choose_node_engine("auto", "", "svd_xt.safetensors")
    nodes.choose_node_engine("local", "", "stabilityai/stable-video-diffusion-img2vid")
    eager = {"device": "cpu", "speed": "eager", "memory": "auto"}  # the node's defaults: no surprise compile
    assert chosen == [
        ("local", str(checkpoints), eager),
        ("local", "stabilityai/stable-video-diffusion-img2vid", eager),
    ]


def test_the_speed_and_memory_widgets_reach_the_local_engine_only(chosen, comfy_stub):
    nodes.choose_node_engine("local", "", "tiny", speed="compiled", memory="low")
    nodes.choose_node_engine("remote", "http://10.0.0.2:8000", "", speed="compiled", memory="low")
    assert chosen == [
        ("local", "tiny", {"device": "cpu", "speed": "compiled", "memory": "low"}),
        ("http://10.0.0.2:8000", None, {"server_model": None}),
    ]
    spec = nodes.Img2VidImageToVideo.INPUT_TYPES()["optional"]
    assert spec["speed"][0] == ["eager", "compiled", "fp8", "fast"] and spec["speed"][1]["default"] == "eager"
    assert spec["memory"][0] == ["auto", "low"]


def test_auto_with_nothing_set_leaves_the_choice_to_the_configuration(chosen):
    nodes.choose_node_engine("auto", "", "")
    assert chosen == [(None, None, {"device": None, "speed": "eager", "memory": "auto"})]


def test_a_server_that_is_no_url_names_the_field(chosen):
    with pytest.raises(NodeError, match="server must be"):
        with nodes.node_errors():
            nodes.choose_node_engine("remote", "gpu-box:8000", "")
    assert chosen == []


def test_a_missing_local_engine_tells_comfyui_users_to_keep_their_torch(monkeypatch):
    # None in sys.modules makes the import fail exactly as it does without diffusers installed.
    monkeypatch.setitem(sys.modules, "img2vid.engines.local", None)
    with pytest.raises(NodeError, match="keep it and pip install diffusers transformers safetensors accelerate"):
        with nodes.node_errors():
            nodes.choose_node_engine("local", "", "")
