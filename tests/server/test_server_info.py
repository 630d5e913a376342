"""``GET /info`` and the playground's assets: what the page builds its form from, and that every asset it
loads comes from the server itself."""

from __future__ import annotations

import re
from pathlib import Path

from fastapi.testclient import TestClient

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key
from support.fake_engine import FakeEngine
from support.images import png_bytes
from support.server_harness import V2BETA, auth


def test_info_needs_no_key_and_gives_each_fields_range_with_the_cost_caps(tmp_path: Path) -> None:
    settings = ServerSettings(data=tmp_path, max_frames=12, max_steps=30, max_decode_chunk=8)
    with TestClient(create_app(settings, engine=FakeEngine())) as client:
        info = client.get("/info").json()
    assert info["auth"] is True
    fields = info["fields"]
    assert list(fields)[:3] == ["seed", "cfg_scale", "motion_bucket_id"]
    assert (fields["frames"]["max"], fields["steps"]["max"], fields["decode_chunk_size"]["max"]) == (12, 30, 8)
    assert fields["frames"]["allowed"] == "an integer from 1 to 12"
    assert fields["fps"]["max"] == 60  # no cap: the range's own bound
    assert (fields["cfg_scale"]["default"], fields["motion_bucket_id"]["default"], fields["seed"]["default"]) == (1.8, 127, 0)
    assert fields["frames"]["default"] is None and fields["frames"]["engine"] is True
    assert all(field["help"] for field in fields.values())
    assert info["sizes"] == {
        "any_size": False,
        "allowed": [[1024, 576], [576, 1024], [768, 768]],
        "describe": "1024x576, 576x1024 or 768x768",
        "max_pixels": settings.max_pixels,
    }
    assert info["max_upload_bytes"] == 10 * 1024 * 1024


def test_info_words_are_the_words_of_the_servers_refusals(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path), engine=FakeEngine())
    with TestClient(app) as client:
        key, _ = create_key(app.state.img2vid.store, "t")
        fields = client.get("/info").json()["fields"]
        for name, value in (("seed", "-1"), ("cfg_scale", "11"), ("motion_bucket_id", "0"), ("fps", "61"), ("noise_aug_strength", "2")):
            answer = client.post(
                V2BETA, headers=auth(key), files={"image": ("i.png", png_bytes(1024, 576), "image/png")}, data={name: value}
            )
            assert answer.status_code == 400
            assert answer.json()["errors"][0] == f"{name} must be {fields[name]['allowed']}; got '{value}'"


def test_info_says_cancel_when_the_app_routes_delete_on_a_result(tmp_path: Path) -> None:
    app = create_app(ServerSettings(data=tmp_path, auth=False), engine=FakeEngine())
    with TestClient(app) as client:
        info = client.get("/info").json()
        assert info["cancel"] is True and info["auth"] is False
        app.router.routes[:] = [route for route in app.router.routes if not _routes_delete_on_a_result(route)]
        assert client.get("/info").json()["cancel"] is False  # a server without the route: no Cancel button


def _routes_delete_on_a_result(route: object) -> bool:
    from starlette.routing import Match

    scope = {"type": "http", "method": "DELETE", "path": V2BETA + "/result/" + "0" * 64, "root_path": ""}
    return route.matches(scope)[0] is Match.FULL  # type: ignore[attr-defined]


def test_info_holds_no_secret(tmp_path: Path) -> None:
    settings = ServerSettings(data=tmp_path, database_url=f"sqlite:///{tmp_path / 'secret-name.sqlite3'}", broker_url="redis://:hunter2@x/0")
    with TestClient(create_app(settings, engine=FakeEngine())) as client:
        text = client.get("/info").text
    assert "secret-name" not in text and "hunter2" not in text and str(tmp_path) not in text


def test_the_page_loads_only_assets_the_server_serves(tmp_path: Path) -> None:
    with TestClient(create_app(ServerSettings(data=tmp_path), engine=FakeEngine())) as client:
        page = client.get("/").text
        links = re.findall(r'(?:src|href)="([^"#]+)"', page)
        assert links and not [link for link in links if "//" in link]  # nothing from another host
        for link in links:
            assert client.get("/" + link).status_code == 200, link
        script = client.get("/static/playground.js").text
        assert not re.search(r"https?://", script)
        icon = client.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
