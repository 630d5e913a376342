"""img2vid's node and the model families, without running a model: its inputs (the model list, the
prompts), which engine a model runs on and what it is asked for, which widgets reach a Wan or LTX-Video
request, and the server's model list. No torch needed: these run on the Python 3.10 CI too."""

from __future__ import annotations

import json
import threading

import httpx
import numpy as np
import pytest

import img2vid.comfy.models as models
import img2vid.comfy.nodes as nodes
from img2vid.comfy.runtime import NodeError
from img2vid.fitting import MultipleOf
from img2vid.request import VideoRequest

WAN_INDEX = {"_class_name": "WanPipeline", "expand_timesteps": True, "transformer": ["diffusers", "WanTransformer3DModel"]}
LTX_INDEX = {"_class_name": "LTXPipeline", "transformer": ["diffusers", "LTXVideoTransformer3DModel"]}


@pytest.fixture(autouse=True)
def no_server_lookups(monkeypatch):
    """The server's model list is read by a test's own reader, never from the network, and forgotten after."""
    monkeypatch.setattr(models.SERVER_MODELS, "read", lambda base_url: [])
    models.SERVER_MODELS.clear()
    yield
    models.SERVER_MODELS.clear()


@pytest.fixture
def diffusers_folders(comfy_stub, tmp_path):
    """ComfyUI's diffusers folder with a Wan 2.2 TI2V-5B and an LTX-Video folder (one nested)."""
    root = tmp_path / "models" / "diffusers"
    for name, index in (("Wan2.2-TI2V-5B-Diffusers", WAN_INDEX), ("video/LTX-Video", LTX_INDEX)):
        (root / name / "transformer").mkdir(parents=True)
        (root / name / "model_index.json").write_text(json.dumps(index))
    (root / "notes").mkdir()
    comfy_stub.modules["folder_paths"].add_model_folder_path("diffusers", str(root))
    return root


class Recorder:
    """An engine that records each request and stops the node before it needs torch for the frames."""

    class Stop(Exception):
        pass

    def __init__(self) -> None:
        self.requests: list[VideoRequest] = []
        self.closed = False
        self.server_models: list[str | None] = []
        self.size_rule = MultipleOf(8, max_pixels=1024 * 1024, upscale=False)

    def generate(self, request, progress=None, cancel=None):
        self.requests.append(request)
        raise Recorder.Stop()

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def recorded(monkeypatch):
    """``choose_engine`` replaced: each call is recorded and answered with a :class:`Recorder`."""
    calls: list[tuple] = []
    engine = Recorder()

    def fake_choose_engine(kind=None, model=None, **options):
        calls.append((kind, model))
        engine.server_models.append(options.get("server_model"))
        return engine

    monkeypatch.setattr(nodes, "choose_engine", fake_choose_engine)
    return calls, engine


def run_node(**widgets) -> None:
    """Run the node on a 64x64 image until its first request reaches the recording engine."""
    image = np.zeros((64, 64, 3), dtype=np.uint8)
    with pytest.raises(NodeError, match="unexpected Stop"):
        nodes.Img2VidImageToVideo().generate(image, **widgets)


# ------------------------------------------------------------------------------------------- inputs


def test_prompts_are_optional_multiline_texts_after_every_older_widget():
    declared = nodes.Img2VidImageToVideo.INPUT_TYPES()
    optional = declared["optional"]
    assert list(optional)[-2:] == ["prompt", "negative_prompt"]  # saved workflows keep their positions
    for name in ("prompt", "negative_prompt"):
        kind, options = optional[name]
        assert kind == "STRING" and options["multiline"] is True and options["default"] == ""
    assert "2000 characters" in optional["prompt"][1]["tooltip"]


def test_defaults_leave_each_choice_to_the_model():
    declared = nodes.Img2VidImageToVideo.INPUT_TYPES()
    required, optional = declared["required"], declared["optional"]
    assert required["cfg_scale"][1]["default"] == 0.0
    assert "ltx-video 3.0" in required["cfg_scale"][1]["tooltip"]
    assert [optional[n][1]["default"] for n in ("frames", "steps", "fps")] == [0, 0, 0]
    assert "wan2.2-ti2v-5b 24" in optional["fps"][1]["tooltip"]
    assert "Stable Video Diffusion only" in required["motion_bucket_id"][1]["tooltip"]


def test_the_model_list_holds_comfyuis_diffusers_folders_found_as_comfyui_finds_them(diffusers_folders, comfy_stub):
    choices, options = nodes.Img2VidImageToVideo.INPUT_TYPES()["required"]["model"]
    assert "Wan2.2-TI2V-5B-Diffusers" in choices and "video/LTX-Video" in choices
    assert "notes" not in choices and "transformer" not in " ".join(choices)  # model folders are not walked
    assert choices.index("ltx-video") < choices.index("Wan2.2-TI2V-5B-Diffusers") < choices.index("tiny")
    assert comfy_stub.modules["folder_paths"].get_filename_list("diffusers") == []  # why it walks the folders
    assert options["default"] == nodes.HUB_DEFAULT


def test_a_listed_diffusers_folder_runs_locally_from_its_path(diffusers_folders, recorded):
    calls, _ = recorded
    nodes.choose_node_engine("auto", "http://10.0.0.2:8000", "video/LTX-Video")  # a local folder wins over the server
    assert calls == [("local", str(diffusers_folders / "video" / "LTX-Video"))]


def test_the_node_checks_a_model_named_through_the_api(diffusers_folders):
    validate = nodes.Img2VidImageToVideo.VALIDATE_INPUTS
    for good in ("wan2.2-ti2v-5b", "LTX-Video", "tiny-ltx-video", "video/LTX-Video", "Lightricks/LTX-Video"):
        assert validate(model=good) is True, good
    assert validate(model="my-server-model") != True  # noqa: E712 - the message is the answer
    assert validate(model="my-server-model", engine="remote") is True  # the server says whether it has it
    assert validate(model="bad\nname", engine="remote").startswith("model must be")
    assert validate(model="tiny", engine="sideways") == "engine must be one of auto, remote, local; got 'sideways'"


# ------------------------------------------------------------------------------ engines and requests


def test_a_short_name_runs_locally_and_the_request_carries_only_the_text_families_fields(recorded):
    calls, engine = recorded
    run_node(engine="auto", model="wan2.2-ti2v-5b", prompt="the sun sets", negative_prompt="", seed=3)
    assert calls == [("local", "wan2.2-ti2v-5b")]
    (request,) = engine.requests
    assert request.prompt == "the sun sets" and request.negative_prompt is None
    assert request.given() == {"seed": 3, "prompt": "the sun sets"}  # everything else: the model's defaults
    assert engine.closed


def test_svd_widgets_at_their_defaults_are_not_sent_and_svd_still_gets_the_values_it_set(recorded):
    _, engine = recorded
    run_node(engine="local", model="tiny")
    run_node(engine="local", model="svd-xt", cfg_scale=2.5, motion_bucket_id=90, noise_aug_strength=0.1, frames=14)
    default, changed = engine.requests
    assert default.given() == {"seed": 0}
    assert changed.given() == {"seed": 0, "cfg_scale": 2.5, "motion_bucket_id": 90, "noise_aug_strength": 0.1, "frames": 14}


def test_a_changed_svd_widget_for_a_wan_or_ltx_model_is_refused_by_name(recorded, diffusers_folders):
    calls, _ = recorded
    with pytest.raises(NodeError, match=r"motion_bucket_id is 90, a Stable Video Diffusion setting that Wan 2\.2 "
                       r"TI2V-5B does not have: set it back to 127"):
        nodes.Img2VidImageToVideo().generate(np.zeros((64, 64, 3), np.uint8), model="wan2.2-ti2v-5b", motion_bucket_id=90)
    with pytest.raises(NodeError, match="decode_chunk_size is 4, a Stable Video Diffusion setting that LTX-Video"):
        nodes.Img2VidImageToVideo().generate(np.zeros((64, 64, 3), np.uint8), model="video/LTX-Video", decode_chunk_size=4)
    assert calls == []  # refused before any engine was built


def test_remote_asks_the_server_for_the_picked_model(recorded, monkeypatch):
    calls, engine = recorded
    nodes.choose_node_engine("remote", "http://10.0.0.2:8000", "ltx-video")
    assert calls == [("http://10.0.0.2:8000", None)]  # the model is no local model: the server is asked for it
    assert engine.server_models == ["ltx-video"]


def test_remote_with_the_default_entry_asks_for_the_servers_default(recorded):
    calls, engine = recorded
    nodes.choose_node_engine("remote", "http://10.0.0.2:8000", nodes.HUB_DEFAULT)
    assert engine.server_models == [None]


def test_auto_with_a_server_on_the_node_sends_a_short_name_there(recorded):
    calls, engine = recorded
    nodes.choose_node_engine("auto", "http://10.0.0.2:8000", "wan2.2-ti2v-5b")
    assert calls == [("http://10.0.0.2:8000", None)] and engine.server_models == ["wan2.2-ti2v-5b"]


def test_a_model_no_server_can_have_is_a_clear_error(recorded, diffusers_folders, comfy_stub, tmp_path):
    calls, _ = recorded
    with pytest.raises(NodeError, match="'Wan2.2-TI2V-5B-Diffusers' is a file or folder of this ComfyUI's, which a "
                       "server cannot load"):
        with nodes.node_errors():
            nodes.choose_node_engine("remote", "http://10.0.0.2:8000", "Wan2.2-TI2V-5B-Diffusers")
    with pytest.raises(NodeError, match="Stability's image-to-video service has one model"):
        with nodes.node_errors():
            nodes.choose_node_engine("remote", "stability", "wan2.2-ti2v-5b")
    assert calls == []


# ----------------------------------------------------------------------------- the server's model list


def info_transport(payload, status: int = 200, seen: list | None = None) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        return httpx.Response(status, json=payload)

    return httpx.MockTransport(handler)


def test_a_servers_info_lists_its_models_by_name():
    seen: list[httpx.Request] = []
    payload = {"version": "1", "models": [{"name": "wan2.2-ti2v-5b", "family": "wan"}, {"name": "ltx-video"}, {"x": 1}, "svd-xt"]}
    names = models.read_server_models("http://gpu-box:8000/", transport=info_transport(payload, seen=seen))
    assert names == ["wan2.2-ti2v-5b", "ltx-video", "svd-xt"]
    assert str(seen[0].url) == "http://gpu-box:8000/info" and "authorization" not in seen[0].headers


@pytest.mark.parametrize(
    ("payload", "status"),
    [({"version": "1"}, 200), ({"models": "all"}, 200), ({"models": [{"name": "a\nb"}]}, 200), ({}, 404), ([], 200)],
)
def test_a_server_without_a_usable_list_has_only_its_default(payload, status):
    assert models.read_server_models("http://gpu-box:8000", transport=info_transport(payload, status)) == []


def test_an_unreachable_server_has_no_list_and_raises_nothing():
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    assert models.read_server_models("http://gpu-box:8000", transport=httpx.MockTransport(refuse)) == []


def test_the_configured_servers_models_join_the_list_without_ever_waiting_for_it(monkeypatch):
    monkeypatch.setenv("IMG2VID_BASE_URL", "http://gpu-box:8000")
    asked, answer = threading.Event(), threading.Event()

    def slow_read(base_url: str) -> list[str]:
        asked.set()
        answer.wait(5)
        return ["wan-lightning", "ltx-video"]

    monkeypatch.setattr(models.SERVER_MODELS, "read", slow_read)
    first = nodes.checkpoint_choices()  # answers at once, while the server is still being asked
    assert asked.wait(5) and "wan-lightning" not in first
    answer.set()
    for _ in range(500):
        if "wan-lightning" in nodes.checkpoint_choices():
            break
        threading.Event().wait(0.01)
    choices = nodes.checkpoint_choices()
    assert choices.index("wan-lightning") < choices.index("tiny") and choices.count("ltx-video") == 1


def test_no_list_is_asked_of_stability_or_without_a_configured_server(monkeypatch):
    asked: list[str] = []
    monkeypatch.setattr(models.SERVER_MODELS, "read", lambda base_url: asked.append(base_url) or [])
    nodes.checkpoint_choices()
    monkeypatch.setenv("IMG2VID_BASE_URL", "stability")
    nodes.checkpoint_choices()
    assert asked == []
