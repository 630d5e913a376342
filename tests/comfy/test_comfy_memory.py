"""The local engine's memory and ComfyUI's model management: room made before loading, the engine released
by "Free model and node cache" (``unload_all_models``), when ComfyUI lacks room, and on interrupt."""

from __future__ import annotations

import pytest

from img2vid.comfy import memory
from support.comfy_stub import GiB


class DeviceEngine:
    """A loaded local engine on the stand-in GPU, holding ``size`` bytes there until released."""

    def __init__(self, stub, size: int, device: str = "cuda:0") -> None:
        self.stub, self.size, self.device, self.loaded = stub, size, device, True
        stub.outside[device] = stub.outside.get(device, 0) + size
        self.make_room = None

    def release(self) -> bool:
        if not self.loaded:
            return False
        self.loaded = False
        self.stub.outside[self.device] -= self.size
        return True


def test_before_loading_comfyui_unloads_its_own_models_to_make_room(comfy_stub):
    comfy_stub.torch_device = "cuda:0"
    comfy_stub.load_model("SDXL", 7 * GiB)
    comfy_stub.load_model("SDXL VAE", GiB // 4)
    comfy_stub.outside["cuda:0"] = 14 * GiB  # what else uses the card: 24 - 14 - 7.25 leaves 2.75 GiB

    memory.make_room("cuda:0", int(4.5 * GiB))  # SVD-XT's weights in half precision

    (request,) = [e for e in comfy_stub.events if e[0] == "free_memory"]
    needed = 4.5 * GiB * 1.1 + comfy_stub.model_management.minimum_inference_memory()
    assert request == ("free_memory", pytest.approx(needed), "cuda:0")
    assert comfy_stub.loaded_model_names() == []  # the VAE alone was not enough room; SDXL went too
    assert ("soft_empty_cache",) in comfy_stub.events


def test_comfyui_keeps_its_models_when_there_is_room_and_is_not_asked_for_a_device_it_does_not_run_on(comfy_stub):
    comfy_stub.torch_device = "cuda:0"
    comfy_stub.load_model("SDXL", 7 * GiB)
    memory.make_room("cuda", 4 * GiB)  # torch's name for ComfyUI's cuda:0
    memory.make_room("cpu", 4 * GiB)  # ComfyUI runs its models on the GPU: it has nothing to unload here
    memory.make_room("cuda:1", 4 * GiB)
    assert comfy_stub.loaded_model_names() == ["SDXL"]
    assert [e[2] for e in comfy_stub.events if e[0] == "free_memory"] == ["cuda:0"]


@pytest.mark.parametrize("device, engine_device", [("cpu", "cpu"), ("mps", "mps"), ("xpu:0", "xpu"), ("cuda:1", "cuda:1")])
def test_room_is_asked_on_every_device_comfyui_runs_its_models_on(comfy_stub, device, engine_device):
    # ComfyUI started with --cpu (its models in RAM), on a Mac (mps), on Intel (xpu:0) or a second GPU.
    comfy_stub.torch_device = device
    comfy_stub.ram = comfy_stub.vram = 16 * GiB
    comfy_stub.load_model("SDXL", 7 * GiB, device=device)
    comfy_stub.outside[device] = 6 * GiB  # the rest of the system

    memory.make_room(engine_device, 4 * GiB)

    (request,) = [e for e in comfy_stub.events if e[0] == "free_memory"]
    assert request[2] == device  # ComfyUI's own device object: its model list and get_free_memory want it
    assert comfy_stub.loaded_model_names() == []  # 16 - 6 - 7 left too little for 4.4 GiB and a run


def test_on_the_cpu_loading_releases_another_img2vid_model_when_ram_is_short(comfy_stub):
    comfy_stub.torch_device = "cpu"  # ComfyUI started with --cpu
    comfy_stub.ram = 16 * GiB
    first = DeviceEngine(comfy_stub, 10 * GiB, device="cpu")  # a Wan model, loaded in RAM by an earlier run
    memory.attach(first)

    memory.make_room("cpu", 8 * GiB)  # another model's weights: 10 + 8 GiB do not fit in 16

    assert not first.loaded


def test_comfyui_loading_a_model_it_has_no_room_for_releases_the_engine(comfy_stub):
    engine = DeviceEngine(comfy_stub, 12 * GiB)
    memory.attach(engine)
    assert engine.make_room is memory.make_room
    mm = comfy_stub.model_management

    gpu = comfy_stub.device("cuda:0")
    mm.free_memory(4 * GiB, gpu)  # room enough beside the engine: it stays warm
    assert engine.loaded
    mm.free_memory(14 * GiB, gpu)  # an SDXL run next to it: ComfyUI cannot make room alone
    assert not engine.loaded and mm.get_free_memory(gpu) == 24 * GiB


@pytest.mark.parametrize("device", ["cpu", "mps"])
def test_free_model_and_node_cache_releases_the_engine_in_ram(comfy_stub, device):
    comfy_stub.torch_device = device  # ComfyUI started with --cpu, or on a Mac: the button reaches this device
    engine = DeviceEngine(comfy_stub, 2 * GiB, device=device)
    memory.attach(engine)

    comfy_stub.model_management.unload_all_models()

    assert not engine.loaded


def test_free_model_and_node_cache_releases_the_engine(comfy_stub):
    comfy_stub.torch_device = "cuda:0"
    engines = [DeviceEngine(comfy_stub, 5 * GiB), DeviceEngine(comfy_stub, GiB, device="cuda:1")]
    for engine in engines:
        memory.attach(engine)
    comfy_stub.load_model("SDXL", 7 * GiB)

    comfy_stub.model_management.unload_all_models()  # what the button reaches: free_memory(1e30, cuda:0)

    assert comfy_stub.loaded_model_names() == [] and not engines[0].loaded
    assert engines[1].loaded  # another device: not asked for
    memory.watch_comfyui()  # wrapping twice would release twice: it wraps once
    assert comfy_stub.model_management.free_memory.__wrapped__.__name__ == "free_memory"
    assert not hasattr(comfy_stub.model_management.free_memory.__wrapped__, "__wrapped__")


def test_outside_comfyui_nothing_is_attached(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "comfy.model_management", None)
    engine = DeviceEngine.__new__(DeviceEngine)
    engine.make_room = None
    memory.attach(engine)
    assert engine.make_room is None


# ---------------------------------------------------------------- the local engine itself (needs torch)


@pytest.fixture
def shared_tiny():
    pytest.importorskip("torch", reason="the local engine needs torch")
    from img2vid.engines.local import LocalEngine

    return LocalEngine.shared("tiny", device="cpu")


FAST = {"engine": "local", "model": "tiny", "frames": 2, "steps": 2, "fps": 8}


def _image():
    import torch

    from support.images import gradient

    return torch.from_numpy(gradient(64, 64)).float()[None] / 255.0


def test_the_node_makes_room_for_its_weights_and_the_button_releases_them(comfy_stub, shared_tiny, monkeypatch):
    from img2vid.comfy.nodes import Img2VidImageToVideo

    shared_tiny.release()  # this test loads it
    asked = []
    comfyui_make_room = memory.make_room

    def make_room(device, size):
        asked.append((str(device), size, shared_tiny.loaded))
        comfyui_make_room(device, size)

    monkeypatch.setattr(memory, "make_room", make_room)
    Img2VidImageToVideo().generate(_image(), **FAST)

    parts = shared_tiny.components()
    weights = sum(p.numel() for m in (parts.unet, parts.vae, parts.image_encoder) for p in m.parameters()) * 4
    assert asked == [("cpu", weights, False)]  # fp32 on the CPU, asked before anything was placed

    comfy_stub.model_management.unload_all_models()  # the "Free model and node cache" button

    assert not shared_tiny.loaded and not shared_tiny.release()


def test_an_interrupted_run_releases_the_engine(comfy_stub, shared_tiny):
    from img2vid.comfy.nodes import Img2VidImageToVideo

    steps = []

    def cancel_at_first_step(value, total):
        steps.append(shared_tiny.loaded)
        comfy_stub.interrupt()

    comfy_stub.on_update = cancel_at_first_step
    with pytest.raises(comfy_stub.InterruptProcessingException):
        Img2VidImageToVideo().generate(_image(), **{**FAST, "steps": 20})
    assert steps[:1] == [True]  # it was loaded and running when Cancel came
    assert not shared_tiny.loaded


@pytest.mark.gpu
def test_on_a_gpu_the_released_memory_is_free_again(comfy_stub, shared_tiny):
    import torch

    from img2vid.comfy.nodes import Img2VidImageToVideo
    from img2vid.engines.local import LocalEngine

    comfy_stub.torch_device = "cuda:0"  # ComfyUI's device: the node runs the engine there
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    Img2VidImageToVideo().generate(_image(), **FAST)
    engine = LocalEngine.shared("tiny", device="cuda:0")
    assert engine.loaded and torch.cuda.memory_allocated() > before
    assert [e[0] for e in comfy_stub.events if e[0] == "free_memory" and e[2] == "cuda:0"]  # room asked on the GPU

    comfy_stub.model_management.unload_all_models()

    torch.cuda.synchronize()
    assert not engine.loaded and torch.cuda.memory_allocated() <= before + 1024**2
