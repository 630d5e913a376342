"""Engine choice: what the CLI and the nodes get for each combination of --engine, --model and config."""

from __future__ import annotations

import sys

import pytest

from img2vid.engines.select import choose_engine
from img2vid.errors import InvalidInputError, ModelError


def test_a_configured_server_means_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    from img2vid.engines.remote import RemoteEngine

    monkeypatch.setenv("IMG2VID_BASE_URL", "http://127.0.0.1:9")
    engine = choose_engine()
    assert isinstance(engine, RemoteEngine)
    engine.close()


def test_a_server_in_the_config_file_means_remote(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    from img2vid.engines.remote import RemoteEngine

    config = tmp_path / "config.toml"
    config.write_text('base_url = "http://127.0.0.1:9"\n')  # a server with no auth: no key anywhere
    monkeypatch.setenv("IMG2VID_CONFIG", str(config))
    engine = choose_engine()
    assert isinstance(engine, RemoteEngine) and engine.base_url == "http://127.0.0.1:9"
    engine.close()


def test_a_configured_key_means_remote(monkeypatch: pytest.MonkeyPatch) -> None:
    from img2vid.engines.remote import RemoteEngine

    monkeypatch.setenv("STABILITY_API_KEY", "sk-select-test-1234567890")
    engine = choose_engine()
    assert isinstance(engine, RemoteEngine) and engine.is_stability
    engine.close()


def test_an_explicit_url_means_remote() -> None:
    from img2vid.engines.remote import RemoteEngine

    engine = choose_engine("http://127.0.0.1:9")
    assert isinstance(engine, RemoteEngine)
    engine.close()


def test_nothing_configured_means_the_local_engine_with_the_default_model() -> None:
    from img2vid.engines.local import DEFAULT_MODEL, LocalEngine

    engine = choose_engine()  # no --engine, no --model, no server or key anywhere (conftest clears them)
    assert isinstance(engine, LocalEngine) and engine.model == DEFAULT_MODEL
    tiny = choose_engine("local", "tiny")
    assert isinstance(tiny, LocalEngine) and tiny.model == "tiny"
    assert choose_engine(model="tiny") is tiny  # one warm engine per model in a process


@pytest.mark.parametrize(("engine", "model", "message"), [
    ("ftp://example", None, "stability, local, or a server URL"),
    ("stability", "tiny", "--model picks the local engine"),
])
def test_contradictions_and_unknown_engines_are_named(engine: str, model: str | None, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message) as caught:
        choose_engine(engine, model)
    assert caught.value.field == "engine"


def test_a_model_with_a_server_url_names_one_of_the_server_s_models() -> None:
    from img2vid.engines.remote import RemoteEngine

    engine = choose_engine("http://127.0.0.1:9", "wan2.2-ti2v-5b")
    assert isinstance(engine, RemoteEngine) and engine.model == "wan2.2-ti2v-5b"
    engine.close()


def test_missing_local_packages_give_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail exactly as it does without torch installed.
    monkeypatch.setitem(sys.modules, "img2vid.engines.local", None)
    with pytest.raises(ModelError, match=r"pip install torch==2\.13\.0 'img2vid\[local\]'"):
        choose_engine(model="tiny")
