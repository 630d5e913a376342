"""The client raises the error class a live img2vid server named: a job whose engine failed to load its
model ends in :class:`~img2vid.errors.ModelError` on the client too, not a plain ServiceError."""

from __future__ import annotations

from pathlib import Path

import pytest

from img2vid import VideoRequest, errors
from img2vid.cli.exits import exit_code_for
from img2vid.engines.remote import RemoteEngine
from support.images import gradient
from support.server_harness import create_key_direct, live_server

FAILING = {"IMG2VID_ENGINE_FACTORY": "support.fake_engine:from_env", "IMG2VID_FAKE_FAIL": "ModelError"}


@pytest.mark.live
def test_a_job_that_failed_with_a_model_error_is_a_model_error_on_the_client(tmp_path: Path) -> None:
    key = create_key_direct(tmp_path)
    with live_server(tmp_path, env=FAILING) as server:
        engine = RemoteEngine(server.url, key, poll_interval=0.05)
        try:
            with pytest.raises(errors.Img2VidError) as caught:
                engine.generate(VideoRequest(image=gradient(1024, 576), seed=3))
        finally:
            engine.close()
    error = caught.value
    assert type(error) is errors.ModelError
    assert "the server failed on job" in error.message and "(model_error)" in error.message
    assert error.details == ["the fake engine raised ModelError on purpose (seed 3)"]
    assert exit_code_for(error) == 2  # the CLI answers it as it answers a local model that cannot load
