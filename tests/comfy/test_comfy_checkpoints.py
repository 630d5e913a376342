"""The node's ``model`` is a list, as in ComfyUI's own loaders: the user's checkpoints (SVD first), the hub
default, the family table's short names, the user's diffusers folders and the tiny models, read from
ComfyUI's ``folder_paths`` each time ComfyUI asks for the node's inputs."""

from __future__ import annotations

import sys

import pytest

import img2vid.comfy.nodes as nodes
from img2vid.families import FAMILIES, SHORT_NAMES

SDXL, SVD_XT, SVD = "sd_xl_base_1.0.safetensors", "svd_xt.safetensors", "video/svd.safetensors"


@pytest.fixture
def checkpoints(comfy_stub, tmp_path):
    """ComfyUI's checkpoints folder with an SDXL and two SVD checkpoints (one in a subfolder) and a stray file."""
    folder = tmp_path / "models" / "checkpoints"
    for name in (SDXL, SVD_XT, SVD, "put_checkpoints_here", "notes.txt"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    comfy_stub.modules["folder_paths"].add_model_folder_path("checkpoints", str(folder))
    return folder


@pytest.fixture
def chosen(monkeypatch):
    calls = []
    monkeypatch.setattr(
        nodes, "choose_engine", lambda engine=None, model=None, **options: calls.append((engine, model))
    )
    return calls


def model_widget():
    return nodes.Img2VidImageToVideo.INPUT_TYPES()["required"]["model"]


#: The short names, SVD's first, then the other families in the table's order.
SHORT = ["svd-xt", "svd", "svd-xt-1.1", "wan2.2-ti2v-5b", "wan2.2-i2v-a14b", "wan2.1-i2v-14b-480p", "wan2.1-i2v-14b-720p", "ltx-video"]
TINY = ["tiny", "tiny-wan2.2-ti2v-5b", "tiny-wan2.2-i2v-a14b", "tiny-wan2.1-i2v-14b-480p", "tiny-wan2.1-i2v-14b-720p", "tiny-ltx-video"]


def test_the_short_and_tiny_names_are_the_family_tables():
    assert sorted(SHORT) == sorted(SHORT_NAMES) and set(FAMILIES) <= set(SHORT)
    assert TINY[1:] == [f"tiny-{key}" for key, family in FAMILIES.items() if family.kind != "svd"]


def test_the_model_list_is_the_users_checkpoints_svd_first_and_the_hub_default(checkpoints):
    choices, options = model_widget()
    assert choices == [SVD_XT, SVD, nodes.HUB_DEFAULT, *SHORT, SDXL, *TINY]
    assert options["default"] == nodes.HUB_DEFAULT  # neutral: auto still follows the configuration

    (checkpoints / "svd_xt_1_1.safetensors").write_bytes(b"")
    assert model_widget()[0] == [SVD_XT, "svd_xt_1_1.safetensors", SVD, nodes.HUB_DEFAULT, *SHORT, SDXL, *TINY]  # after a refresh


def test_outside_comfyui_the_list_is_the_hub_default_the_short_names_and_the_tiny_models(monkeypatch):
    monkeypatch.setitem(sys.modules, "folder_paths", None)
    assert model_widget()[0] == [nodes.HUB_DEFAULT, *SHORT, *TINY]


def test_a_picked_checkpoint_runs_locally_from_its_file(checkpoints, chosen, monkeypatch):
    monkeypatch.setenv("IMG2VID_BASE_URL", "http://gpu-box:8000")  # a configured server does not win over a pick
    nodes.choose_node_engine("auto", "", SVD)
    assert chosen == [("local", str(checkpoints / SVD))]


def test_the_hub_default_leaves_auto_to_the_configuration(checkpoints, chosen, monkeypatch):
    nodes.choose_node_engine("auto", "", nodes.HUB_DEFAULT)
    nodes.choose_node_engine("local", "", nodes.HUB_DEFAULT)
    monkeypatch.setenv("IMG2VID_BASE_URL", "http://gpu-box:8000")
    nodes.choose_node_engine("auto", "http://10.0.0.2:8000", nodes.HUB_DEFAULT)
    assert chosen == [(None, None), ("local", nodes.HUB_DEFAULT), ("http://10.0.0.2:8000", None)]


def test_a_model_not_in_the_list_is_checked_by_the_node_with_a_clear_message(checkpoints, tmp_path):
    validate = nodes.Img2VidImageToVideo.VALIDATE_INPUTS
    for good in (
        SVD,
        nodes.HUB_DEFAULT,
        "",
        "stabilityai/stable-video-diffusion-img2vid",
        str(checkpoints / SDXL),
        "tiny",
    ):
        assert validate(model=good) is True, good
    message = validate(model="svd_xt_missing.safetensors")
    assert (
        message.startswith("model must be a short name (wan2.2-ti2v-5b, ltx-video, svd-xt ...), a checkpoint")
        and "'svd_xt_missing.safetensors'" in message
    )


def test_the_hub_default_is_the_local_engines_default():
    local = pytest.importorskip("img2vid.engines.local", reason="the local engine needs torch")
    assert nodes.HUB_DEFAULT == local.DEFAULT_MODEL
