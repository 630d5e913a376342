"""Admission at the door: wrong keys are limited per client address (429 with ``Retry-After`` and no store
lookup once an address has sent too many), an unknown key is remembered briefly so a flood of it reaches
the store once, and neither table holds a key in the clear. Time is a fake clock the test moves."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from img2vid.server import ServerSettings, create_app
from img2vid.server.keys import create_key, hash_key
from support.fake_engine import FakeEngine
from support.images import png_bytes
from support.server_harness import V2ALPHA, V2BETA

NO_JOB = "0" * 64


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Door:
    app: object
    client: TestClient
    clock: FakeClock
    lookups: list[str]

    @property
    def state(self):  # noqa: ANN201
        return self.app.state.img2vid  # type: ignore[attr-defined]

    def poll(self, key: str, client: TestClient | None = None):  # noqa: ANN201
        return (client or self.client).get(f"{V2BETA}/result/{NO_JOB}", headers={"authorization": f"Bearer {key}"})

    def other_address(self, host: str) -> TestClient:
        return TestClient(self.app, client=(host, 40000))  # type: ignore[arg-type]


@contextmanager
def _door(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **settings: object) -> Iterator[Door]:
    app = create_app(ServerSettings(data=tmp_path, rate_limit=0, **settings), engine=FakeEngine())
    state = app.state.img2vid
    clock = FakeClock()
    state.keys.clock = clock
    if state.keys.failures is not None:
        state.keys.failures.buckets.clock = clock
    lookups: list[str] = []
    real = state.store.key_is_active

    def counted(owner: str) -> bool:
        lookups.append(owner)
        return real(owner)

    monkeypatch.setattr(state.store, "key_is_active", counted)
    with TestClient(app) as client:
        yield Door(app, client, clock, lookups)


@pytest.fixture
def door(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Door]:
    with _door(tmp_path, monkeypatch, unknown_key_cache_seconds=0) as door:
        yield door


@pytest.fixture
def door_without_failure_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Door]:
    with _door(tmp_path, monkeypatch, auth_failure_limit=0) as door:
        yield door


def test_after_20_wrong_keys_an_address_gets_429_with_retry_after_and_no_store_lookup(door: Door) -> None:
    for number in range(20):
        assert door.poll(f"sk-wrong-{number}").status_code == 401
    assert len(door.lookups) == 20
    for route in (V2BETA, V2ALPHA):
        for answer in (
            door.poll("sk-wrong-next"),
            door.client.post(route, headers={"authorization": "sk-another"}, files={"image": ("i.png", b"x")}),
        ):
            assert answer.status_code == 429, answer.text
            body = answer.json()
            assert set(body) == {"id", "name", "errors"} and body["name"] == "rate_limited"
            assert "wrong API keys" in body["errors"][0]
            assert int(answer.headers["retry-after"]) >= 1
    assert len(door.lookups) == 20, "a refused address must not reach the store"


def test_the_limit_is_per_address_and_lifts_as_the_window_passes(door: Door) -> None:
    key, _ = create_key(door.state.store, "good")
    for number in range(21):
        door.poll(f"sk-wrong-{number}")
    assert door.poll(key).status_code == 429  # not yet cached as valid: refused like any other key
    elsewhere = door.other_address("10.0.0.2")
    assert door.poll(key, elsewhere).status_code == 404  # another address is not affected
    assert door.poll(key).status_code == 404  # and now the key is known good: it works from here too
    door.clock.now += 1.0  # 20 per 10 s refills 2 a second
    assert door.poll("sk-wrong-again").status_code == 401
    assert door.poll("sk-wrong-again-2").status_code == 401
    assert door.poll("sk-wrong-again-3").status_code == 429


def test_good_keys_never_count_against_an_address(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _door(tmp_path, monkeypatch, key_cache_seconds=0) as door:  # every request looks the key up
        key, _ = create_key(door.state.store, "good")
        for _ in range(50):
            assert door.poll(key).status_code == 404
        assert door.poll("sk-wrong").status_code == 401
        assert len(door.lookups) == 51


def test_a_flood_of_one_unknown_key_reaches_the_store_once(door_without_failure_limit: Door) -> None:
    door = door_without_failure_limit
    for _ in range(200):
        assert door.poll("sk-never-made").status_code == 401
    assert door.lookups == [hash_key("sk-never-made")]
    door.clock.now += 5.1  # unknown_key_cache_seconds (default 5): looked up again
    assert door.poll("sk-never-made").status_code == 401
    assert len(door.lookups) == 2


def test_a_revoked_key_is_remembered_as_unknown(door_without_failure_limit: Door) -> None:
    door = door_without_failure_limit
    key, _ = create_key(door.state.store, "k")
    assert door.poll(key).status_code == 404
    door.state.store.revoke_key("k")
    door.clock.now += 5.1  # past the valid-key cache
    assert [door.poll(key).status_code for _ in range(10)] == [401] * 10
    assert len(door.lookups) == 2


def test_the_tables_hold_hashes_and_addresses_never_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = "sk-img2vid-this-key-does-not-exist"
    with _door(tmp_path, monkeypatch) as door:
        key, _ = create_key(door.state.store, "good")
        door.poll(wrong)
        door.poll(key)
        keys = door.state.keys
        remembered = [*keys._unknown_until, *keys._valid_until, *keys.failures.buckets._buckets]
    assert hash_key(wrong) in remembered and hash_key(key) in remembered and "testclient" in remembered
    assert not any(wrong in name or key in name for name in remembered)


def test_the_failure_limit_is_a_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with _door(tmp_path, monkeypatch, auth_failure_limit=3, auth_failure_window=60, unknown_key_cache_seconds=0) as door:
        assert [door.poll(f"sk-{n}").status_code for n in range(5)] == [401, 401, 401, 429, 429]
        assert door.poll("sk-x").headers["retry-after"] == "20"  # 3 per 60 s: one more in 20 s


def test_a_valid_submit_still_works_through_the_door(door: Door) -> None:
    key, _ = create_key(door.state.store, "good")
    answer = door.client.post(V2BETA, headers={"authorization": key}, files={"image": ("i.png", png_bytes(1024, 576), "image/png")})
    assert answer.status_code == 200, answer.text


# The OpenAPI document: what a generated client reads.


def _document(tmp_path: Path, **settings: object) -> dict:
    app = create_app(ServerSettings(data=tmp_path, **settings), engine=FakeEngine())
    return TestClient(app).get("/openapi.json").json()


def _form(document: dict, route: str = V2BETA) -> dict:
    return document["paths"][route]["post"]["requestBody"]["content"]["multipart/form-data"]["schema"]


PROTOCOL_OPERATIONS = [
    (V2BETA, "post"),
    (V2ALPHA, "post"),
    (f"{V2BETA}/result/{{id}}", "get"),
    (f"{V2ALPHA}/result/{{id}}", "get"),
    (f"{V2BETA}/result/{{id}}", "delete"),
    (f"{V2ALPHA}/result/{{id}}", "delete"),
]


def test_the_key_is_an_http_bearer_scheme_on_every_protocol_route(tmp_path: Path) -> None:
    document = _document(tmp_path)
    schemes = document["components"]["securitySchemes"]
    assert len(schemes) == 1
    (name, scheme), = schemes.items()
    assert scheme["type"] == "http" and scheme["scheme"] == "bearer"
    assert "bare key" in scheme["description"]
    for path, method in PROTOCOL_OPERATIONS:
        assert document["paths"][path][method]["security"] == [{name: []}]
    for path in ("/healthz", "/metrics"):
        assert "security" not in document["paths"][path]["get"]


def test_with_auth_off_no_route_asks_for_a_key(tmp_path: Path) -> None:
    document = _document(tmp_path, auth=False)
    assert "securitySchemes" not in document.get("components", {})
    assert all("security" not in document["paths"][path][method] for path, method in PROTOCOL_OPERATIONS)


def test_errors_are_documented_as_the_server_gives_them_and_422_only_for_a_reused_idempotency_key(tmp_path: Path) -> None:
    document = _document(tmp_path)
    expected = {
        "post": {"400", "401", "413", "422", "429", "500", "503"},
        "get": {"400", "401", "403", "404", "410", "429", "500", "503"},
        "delete": {"401", "404", "409", "429", "503"},
    }
    for path, method in PROTOCOL_OPERATIONS:
        answers = document["paths"][path][method]["responses"]
        errors = {status for status in answers if status >= "400"}
        assert errors == expected[method], path
        for status in errors:
            assert answers[status]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorAnswer"}
            assert answers[status]["description"]
        assert "Retry-After" in answers["429"]["headers"] and "Retry-After" in answers["503"]["headers"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method == "post" and (path, method) in PROTOCOL_OPERATIONS:
                assert "idempotency_key_reused" in operation["responses"]["422"]["description"]
                (header,) = [p for p in operation["parameters"] if p["name"] == "Idempotency-Key"]
                assert header["in"] == "header" and not header["required"]
                assert (header["schema"]["minLength"], header["schema"]["maxLength"]) == (1, 200)
            else:  # FastAPI's own "Validation Error" 422 is never answered: every such problem is a 400
                assert "422" not in operation["responses"], (path, method)
    assert set(document["components"]["schemas"]["ErrorAnswer"]["required"]) == {"id", "name", "errors"}
    assert "HTTPValidationError" not in document["components"]["schemas"]


def test_the_form_states_every_range_the_caps_and_the_image_rules(tmp_path: Path) -> None:
    form = _form(_document(tmp_path))
    fields = form["properties"]
    assert (fields["frames"]["maximum"], fields["steps"]["maximum"], fields["decode_chunk_size"]["maximum"]) == (50, 100, 25)
    assert "IMG2VID_MAX_FRAMES" in fields["frames"]["description"] and "at most 50" in fields["frames"]["description"]
    assert (fields["seed"]["minimum"], fields["seed"]["maximum"], fields["motion_bucket_id"]["maximum"]) == (0, 4294967294, 255)
    assert fields["seed"]["type"] == "integer" and fields["cfg_scale"]["type"] == "number"
    for name, entry in fields.items():
        if entry["type"] in ("integer", "number"):
            kind = "An integer" if entry["type"] == "integer" else "A number"
            assert entry["description"].startswith(f"{kind} from {entry['minimum']} to "), name
    image = fields["image"]["description"]
    for words in ("PNG", "JPEG", "WebP", "1024x576, 576x1024 or 768x768", "10 MiB"):
        assert words in image
    assert "A field sent empty means its default" in form["description"]
    assert _form(_document(tmp_path, max_frames=500))["properties"]["frames"]["maximum"] == 257  # min(range, cap)
    assert _form(_document(tmp_path, max_steps=7), V2ALPHA)["properties"]["steps"]["maximum"] == 7


def test_the_202_answer_has_a_queue_position_and_retry_after(tmp_path: Path) -> None:
    document = _document(tmp_path)
    answer = document["paths"][f"{V2BETA}/result/{{id}}"]["get"]["responses"]["202"]
    assert answer["headers"]["Retry-After"]["required"] is True
    model = document["components"]["schemas"]["InProgressAnswer"]
    assert "queue_position" in model["properties"] and "queue_position" not in model.get("required", [])
    position = model["properties"]["queue_position"]
    assert (position["type"], position["minimum"]) == ("integer", 0)  # old clients may ignore it
    alpha = document["paths"][f"{V2ALPHA}/result/{{id}}"]["get"]["responses"]["200"]["content"]["application/json"]
    assert "finishReason" in alpha["schema"]["required"]


def test_healthz_documents_its_503(tmp_path: Path) -> None:
    answers = _document(tmp_path)["paths"]["/healthz"]["get"]["responses"]
    assert {"200", "503"} <= set(answers)
    assert "starting" in answers["503"]["description"]
