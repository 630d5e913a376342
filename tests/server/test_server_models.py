"""One server, two models side by side: a tiny SVD and a tiny Wan 2.2 TI2V-5B, by name.

The protocol's own clients (no model field) get the default model exactly as before; a request that names
the Wan model, with a prompt, gets the video the CLI makes for the same request; every refusal is a 400
naming the field; /info and the OpenAPI document describe each model.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from img2vid.cli import app as cli
from img2vid.engines.local import LocalEngine
from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from img2vid.video import Video
from support.images import png_bytes
from support.server_harness import V2ALPHA, V2BETA, submit, wait_result

#: 96x64 (multiples of 32): Wan takes it as it is; SVD takes only the protocol's sizes.
SMALL = png_bytes(96, 64, seed=4)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    settings = ServerSettings(data=tmp_path_factory.mktemp("data"), models=["svd=tiny", "wan=tiny-wan2.2-ti2v-5b"], device="cpu", rate_limit=0)
    app = create_app(settings)
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        yield client, key
    LocalEngine.close_shared()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(float) - b.astype(float)) ** 2))
    return 10 * float(np.log10(255.0**2 / max(mse, 1e-12)))


def _video(answer: Any) -> Video:
    assert answer.status_code == 200, answer.text
    return Video.from_bytes(answer.content)


def test_a_client_that_names_no_model_gets_the_default_model_as_before(served: tuple[TestClient, str]) -> None:
    client, key = served
    answer = submit(client, key, image=png_bytes(1024, 576), seed=5, frames=2, steps=1)
    assert answer.status_code == 200, answer.text
    video = _video(wait_result(client, key, answer.json()["id"], timeout=120))
    assert (video.width, video.height, video.num_frames, video.fps) == (1024, 576, 2, 7)


def test_a_wan_job_makes_the_video_the_cli_makes(served: tuple[TestClient, str], tmp_path: Path) -> None:
    client, key = served
    fields = {"model": "wan", "prompt": "a cat runs in the rain", "negative_prompt": "blurry", "seed": 7, "frames": 9, "steps": 2, "cfg_scale": 4}
    answer = submit(client, key, route=V2ALPHA, image=SMALL, **fields)
    assert answer.status_code == 200, answer.text
    served_video = _video(wait_result(client, key, answer.json()["id"], route=V2ALPHA, timeout=120))

    image = tmp_path / "in.png"
    image.write_bytes(SMALL)
    out = tmp_path / "cli.mp4"
    result = CliRunner().invoke(
        cli,
        ["generate", str(image), "--model", "tiny-wan2.2-ti2v-5b", "--prompt", "a cat runs in the rain", "--negative-prompt",
         "blurry", "--seed", "7", "--frames", "9", "--steps", "2", "--cfg-scale", "4", "--device", "cpu", "-o", str(out)],
    )
    assert result.exit_code == 0, result.output
    made = Video.open(out)
    assert (served_video.num_frames, served_video.width, served_video.height, served_video.fps) == (9, 96, 64, 24)
    # Both are H.264 files, and the encoder is not bit-for-bit repeatable even on the same frames (measured:
    # up to 22/255 apart on one pixel, about 40 dB): the same video within the codec's noise. Another
    # seed's video is nowhere near (checked below), so the bound tells a right video from a wrong one.
    # Frame 0 is the input image for every seed (Wan 2.2 TI2V keeps it): compare what the seed makes.
    right = _psnr(served_video.frames[1:], made.frames[1:])
    other = submit(client, key, image=SMALL, **{**fields, "seed": 8})
    wrong = _video(wait_result(client, key, other.json()["id"], timeout=120))
    assert right > 35 and _psnr(wrong.frames[1:], made.frames[1:]) < right - 10, right


def test_another_size_is_fitted_for_wan_but_svd_keeps_the_protocol_sizes(served: tuple[TestClient, str]) -> None:
    client, key = served
    answer = submit(client, key, image=png_bytes(100, 70), model="wan", prompt="a dog", frames=5, steps=1)
    assert answer.status_code == 200, answer.text
    video = _video(wait_result(client, key, answer.json()["id"], timeout=120))
    assert (video.width, video.height) == (96, 64)
    refused = submit(client, key, image=SMALL, frames=2)
    assert refused.status_code == 400 and "1024x576" in refused.text


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"model": "sora"}, "model", "serves svd, wan"),
    ({"model": "wan", "prompt": "a cat", "frames": 10}, "frames", "the nearest are 9 and 13"),
    ({"model": "wan", "prompt": "a cat", "motion_bucket_id": 90}, "motion_bucket_id", "Wan 2.2 TI2V-5B"),
    ({"prompt": "a cat", "frames": 2}, "prompt", "takes no text prompt"),
    ({"model": "wan", "prompt": "x" * 2001}, "prompt", "2000"),
    ({"model": "wan", "prompt": "a cat", "fit": "squash"}, "fit", "crop"),
])
def test_every_refusal_names_the_field(served: tuple[TestClient, str], fields: dict[str, Any], field: str, words: str) -> None:
    client, key = served
    image = SMALL if fields.get("model") == "wan" else png_bytes(1024, 576)
    answer = submit(client, key, image=image, **fields)
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert body["name"] == "invalid_parameters"
    assert body["errors"][0].startswith(field) and words in body["errors"][0], body


def test_a_model_default_above_the_cost_cap_is_refused_with_what_to_send(served: tuple[TestClient, str]) -> None:
    client, key = served
    answer = submit(client, key, image=SMALL, model="wan", prompt="a cat")  # 9 by default for the tiny model: within 50
    assert answer.status_code == 200, answer.text
    settings = ServerSettings(data=Path("unused"), models=["wan=wan2.2-ti2v-5b"], max_frames=50)
    from img2vid.server.uploads import check_fields

    with pytest.raises(Exception) as caught:
        check_fields({"prompt": "a cat"}, "v2beta", settings.cost_caps(), settings.served_models()[0].family)
    assert "121 frames by default" in str(caught.value) and "IMG2VID_MAX_FRAMES" in str(caught.value)


def test_info_describes_each_served_model(served: tuple[TestClient, str]) -> None:
    client, _ = served
    info = client.get("/info").json()
    svd, wan = info["models"]
    assert (svd["name"], svd["default"], svd["takes_prompt"], svd["family"]) == ("svd", True, False, "tiny")
    assert svd["sizes"]["any_size"] is False and [1024, 576] in svd["sizes"]["allowed"]
    assert (wan["name"], wan["default"], wan["takes_prompt"]) == ("wan", False, True)
    assert wan["frames_rule"] == {"step": 4, "describe": "4k+1 frames (5, 9, 13, ...)"}
    assert wan["sizes"]["multiple"] == 32 and wan["sizes"]["any_size"] is True
    assert "motion_bucket_id" in svd["fields"] and "motion_bucket_id" not in wan["fields"] and "prompt" in wan["fields"]
    assert wan["defaults"]["frames"] == 9 and svd["defaults"]["cfg_scale"] == 1.8
    assert info["texts"]["prompt"]["max_chars"] == 2000


def test_the_openapi_document_offers_the_served_models_and_the_text_fields(served: tuple[TestClient, str]) -> None:
    client, _ = served
    document = client.get("/openapi.json").json()
    form = document["paths"][V2BETA]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert form["model"]["enum"] == ["svd", "wan"]
    assert form["prompt"]["maxLength"] == 2000 and form["negative_prompt"]["type"] == "string"
    assert form["fit"]["enum"] == ["strict", "crop", "pad", "stretch"]


def test_the_same_name_twice_and_a_bad_name_are_refused_at_start(tmp_path: Path) -> None:
    from img2vid.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="served twice"):
        ServerSettings(data=tmp_path, models=["a=tiny", "a=tiny-ltx-video"]).served_models()
    with pytest.raises(InvalidInputError, match="model"):
        ServerSettings(data=tmp_path, models=["bad name=tiny"]).served_models()
    names = [m.name for m in ServerSettings(data=tmp_path, models=["tiny", "tiny-ltx-video", "wan2.2-ti2v-5b"]).served_models()]
    assert names == ["tiny", "tiny-ltx-video", "wan2.2-ti2v-5b"]
