"""``GET /fit-plan``: the server's own plan for fitting an image, the one the playground draws and uploads,
and the playground's script modules, every one served from the server itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.errors import InvalidInputError
from img2vid.families import TINY_FAMILIES
from img2vid.fitting import PROTOCOL_SIZES, fit_image, plan_fit
from img2vid.server import ServerSettings, create_app, fitplan
from support.fake_engine import FakeEngine
from support.images import gradient


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = create_app(ServerSettings(data=tmp_path, models=["svd=tiny", "wan=tiny-wan2.2-ti2v-5b"]), engine=FakeEngine())
    if not any(getattr(route, "path", None) == "/fit-plan" for route in app.routes):
        app.include_router(fitplan.router)
    with TestClient(app) as client:
        yield client


def test_the_default_models_plan_is_the_protocols_crop_and_pad_with_no_key(client: TestClient) -> None:
    crop = client.get("/fit-plan", params={"width": 800, "height": 600}).json()
    assert crop == {
        "model": "svd", "fit": "crop", "allowed": True, "message": None, "unchanged": False,
        "target": [1024, 576], "source_box": [0, 75, 800, 450], "placed_box": [0, 0, 1024, 576],
    }
    pad = client.get("/fit-plan", params={"width": 800, "height": 600, "fit": "pad"}).json()
    assert (pad["source_box"], pad["placed_box"]) == ([0, 0, 800, 600], [128, 0, 768, 576])
    same = client.get("/fit-plan", params={"width": 768, "height": 768, "fit": "strict"}).json()
    assert same["allowed"] and same["unchanged"] and same["target"] == [768, 768]


def test_strict_answers_the_servers_own_refusal(client: TestClient) -> None:
    answer = client.get("/fit-plan", params={"width": 800, "height": 600, "fit": "strict"})
    assert answer.status_code == 200
    body = answer.json()
    with pytest.raises(InvalidInputError) as refusal:
        fit_image(gradient(800, 600), PROTOCOL_SIZES, "strict")
    assert body["allowed"] is False and body["message"] == refusal.value.message
    assert body["target"] is None and body["source_box"] is None


def test_a_model_is_planned_with_its_familys_rule_and_a_chosen_size_must_be_one_it_takes(client: TestClient) -> None:
    wan = client.get("/fit-plan", params={"width": 1000, "height": 700, "model": "wan"}).json()
    plan = plan_fit(1000, 700, TINY_FAMILIES["tiny-wan2.2-ti2v-5b"].size_rule, "crop")
    assert wan["model"] == "wan" and wan["target"] == list(plan.target) and wan["source_box"] == list(plan.source_box)
    chosen = client.get("/fit-plan", params={"width": 800, "height": 600, "size": "768x768"}).json()
    assert chosen["target"] == [768, 768] and chosen["source_box"] == [100, 0, 600, 600]
    refused = client.get("/fit-plan", params={"width": 800, "height": 600, "size": "700x700"})
    assert refused.status_code == 200  # a plan the model refuses, as strict's, in the server's words
    answer = refused.json()
    assert answer["allowed"] is False and answer["target"] is None
    assert answer["message"] == "size must be 1024x576, 576x1024 or 768x768; got '700x700'"


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"width": 800, "height": 600, "fit": "zoom"}, "fit must be one of strict, crop, pad, stretch; got 'zoom'"),
        ({"width": 800, "height": 600, "model": "ltx"}, "model 'ltx' is not served here; this server serves svd, wan"),
        ({"width": 0, "height": 600}, "width"),
    ],
)
def test_a_bad_question_is_a_400_in_the_protocols_body(client: TestClient, params: dict[str, object], words: str) -> None:
    answer = client.get("/fit-plan", params=params)
    assert answer.status_code == 400 and answer.json()["name"] == "invalid_parameters"
    assert answer.json()["errors"][0].startswith(words)


def test_fit_image_does_what_the_plan_says() -> None:
    image = gradient(800, 600)
    for mode in ("crop", "pad", "stretch"):
        plan = plan_fit(800, 600, PROTOCOL_SIZES, mode)
        fitted = fit_image(image, PROTOCOL_SIZES, mode)
        assert (fitted.shape[1], fitted.shape[0]) == plan.target
    padded = fit_image(image, PROTOCOL_SIZES, "pad")
    x, y, w, h = plan_fit(800, 600, PROTOCOL_SIZES, "pad").placed_box
    assert padded[:, :x].max() == 0 and padded[:, x + w :].max() == 0 and padded[y : y + h, x : x + w].max() > 0


def test_every_script_module_the_page_loads_is_served_as_javascript_from_here(client: TestClient) -> None:
    seen: set[str] = set()
    todo = ["playground.js"]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200, name
        assert answer.headers["content-type"].split(";")[0] in ("text/javascript", "application/javascript"), name
        assert not re.search(r"https?://", answer.text), name
        todo += re.findall(r'^import [^;]*? from "\./([\w-]+\.js)";', answer.text, re.M)
    assert seen == {"playground.js", "ui.js", "form.js", "preview.js", "job.js", "history.js"}
