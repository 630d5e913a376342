"""Seed 0 re-runs, a fixed seed stays cached: what ComfyUI's cache does with the nodes' IS_CHANGED.

:class:`~support.comfy_stub.PromptRunner` keys each node's output as ComfyUI does (the class, the
answer of ``IS_CHANGED``/``fingerprint_inputs`` for the prompt's constants, every input), so queueing one
prompt twice runs the node twice only where ComfyUI would. The nodes' own work is replaced by a counter:
what is under test is whether ComfyUI calls them, not what they make.
"""

from __future__ import annotations

import sys

import pytest

from img2vid.comfy import legacy, nodes, v3_nodes
from img2vid.comfy.caching import seed_fingerprint
from support.comfy_stub import PromptRunner, install


class LoadImage:
    """ComfyUI's image loader, cut down: one constant image."""

    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "load"

    @classmethod
    def INPUT_TYPES(cls):  # noqa: N802
        return {"required": {"image": (["input.png"],)}}

    def load(self, image):
        return ("pixels of " + image,)


@pytest.fixture
def made(monkeypatch):
    """Every run of either node, with the seed it was given."""
    runs: list[tuple[str, int]] = []

    def img2vid(self, image, seed=0, unique_id=None, **_):
        runs.append(("Img2VidImageToVideo", seed))
        return ("frames", 6.0, [2])

    def saltai(self, image, api_key, seed=0, cfg=2.5, mbi=40):
        runs.append(("SaltAIStableVideoDiffusion", seed))
        return ("frames",)

    monkeypatch.setattr(nodes.Img2VidImageToVideo, "generate", img2vid)
    monkeypatch.setattr(legacy.SaltAIStableVideoDiffusion, "generate_video", saltai)
    return runs


def _prompt(node_type: str, seed, **inputs) -> dict:
    widgets = (
        {"api_key": "", "cfg": 2.5, "mbi": 40}
        if node_type == "SaltAIStableVideoDiffusion"
        else {"engine": "auto", "server": "", "model": nodes.HUB_DEFAULT}
    )
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": "input.png"}},
        "2": {"class_type": node_type, "inputs": {"image": ["1", 0], "seed": seed, **widgets, **inputs}},
    }


def _mappings(v3: bool, monkeypatch) -> dict:
    if not v3:
        return {
            "LoadImage": LoadImage,
            **{c.__name__: c for c in (nodes.Img2VidImageToVideo, legacy.SaltAIStableVideoDiffusion)},
        }
    stub = install(with_v3=True)
    for name, module in stub.modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return {"LoadImage": LoadImage, **{c.__name__: c for c in v3_nodes(stub.modules["comfy_api.latest"].io)}}


@pytest.mark.parametrize("v3", [False, True], ids=["v1", "v3"])
@pytest.mark.parametrize("node_type", ["Img2VidImageToVideo", "SaltAIStableVideoDiffusion"])
def test_seed_zero_runs_every_time_and_a_fixed_seed_is_cached(made, monkeypatch, v3, node_type):
    runner = PromptRunner(_mappings(v3, monkeypatch))

    for _ in range(3):
        runner.run(_prompt(node_type, 0), "2")
    assert made == [(node_type, 0)] * 3  # seed 0: a new random video each time

    made.clear()
    for _ in range(3):
        runner.run(_prompt(node_type, 42), "2")
    assert made == [(node_type, 42)]  # a fixed seed: the cached video
    runner.run(_prompt(node_type, 43), "2")
    assert made == [(node_type, 42), (node_type, 43)]  # another seed: a new video
    assert runner.runs["1"] == 1  # the image loader ran once; the key is per node


def test_a_linked_seed_leaves_the_decision_to_the_linked_node():
    # ComfyUI passes None for an input that comes through a link; that node's own inputs are in the key.
    assert seed_fingerprint(None) == seed_fingerprint(None)
    first, second = seed_fingerprint(0), seed_fingerprint(0)
    assert first != first and first != second  # NaN: ComfyUI never finds a cached output for seed 0
    assert seed_fingerprint(7) == seed_fingerprint(7) == 7
