"""A small, fast, deterministic stand-in for the local engine, for server tests.

Its frames are a pure function of the request (image, seed, cfg, motion bucket), so a test can compute
the video a job must produce and a job re-run after a crash makes the same one. It can be slowed down,
gated on an event, or made to fail (with any of img2vid's errors), to test queueing, progress, crashes and failures. ``from_env`` builds
one from ``IMG2VID_FAKE_*`` variables for a server started as a subprocess.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from img2vid import errors
from img2vid.engines.base import CancelCheck, Engine, ProgressCallback, raise_if_cancelled
from img2vid.fitting import MultipleOf
from img2vid.request import DEFAULT_CFG_SCALE, DEFAULT_MOTION_BUCKET_ID, VideoRequest
from img2vid.video import Video


def expected_frames(request: VideoRequest, frames: int = 2) -> np.ndarray:
    """The frames FakeEngine makes for ``request``: a smooth 1/16 thumbnail, brightened by an amount that
    depends on the seed and options (so different requests give visibly different videos)."""
    image = request.image.astype(np.float64)
    height, width = (image.shape[0] // 32) * 2, (image.shape[1] // 32) * 2
    thumb = image[: height * 16, : width * 16].reshape(height, 16, width, 16, 3).mean(axis=(1, 3))
    motion = request.motion_bucket_id if request.motion_bucket_id is not None else DEFAULT_MOTION_BUCKET_ID
    cfg = request.cfg_scale if request.cfg_scale is not None else DEFAULT_CFG_SCALE
    shift = (request.seed * 7 + int(motion) * 3 + int(round(cfg * 10))) % 100
    out = np.stack([thumb * 0.5 + shift + 20 * index for index in range(frames)])
    return np.ascontiguousarray(np.clip(out, 0, 255).astype(np.uint8))


class FakeEngine(Engine):
    """Engine protocol; counts calls; ``gate`` (if set) blocks each job until it is set."""

    size_rule = MultipleOf(16, 2048 * 2048)

    def __init__(
        self,
        *,
        delay: float = 0.0,
        gate: threading.Event | None = None,
        fail_with: Callable[[VideoRequest], BaseException | None] | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.delay = delay
        self.gate = gate
        self.fail_with = fail_with
        self.log_path = log_path
        self.calls = 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    def generate(
        self,
        request: VideoRequest,
        progress: ProgressCallback | None = None,
        cancel: CancelCheck | None = None,
    ) -> Video:
        with self._lock:
            self.calls += 1
        if self.log_path is not None:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(f"start {request.seed}\n")
        self.started.set()
        if progress is not None:
            progress(0.25, "step 1/2")
        if self.gate is not None:
            while not self.gate.wait(0.05):
                raise_if_cancelled(cancel)
        deadline = time.monotonic() + self.delay
        while time.monotonic() < deadline:
            raise_if_cancelled(cancel)
            time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
        if self.fail_with is not None:
            error = self.fail_with(request)
            if error is not None:
                raise error
        if progress is not None:
            progress(1.0, "done")
        return Video(frames=expected_frames(request), fps=7, seed=request.seed)


def failing_with(name: str) -> Callable[[VideoRequest], BaseException]:
    """A ``fail_with`` that raises the ``img2vid.errors`` class called ``name`` (``ModelError``) on every job."""
    cls = getattr(errors, name)
    return lambda request: cls(f"the fake engine raised {name} on purpose (seed {request.seed})")


def from_env() -> FakeEngine:
    """A FakeEngine configured by ``IMG2VID_FAKE_DELAY`` (seconds per job), ``IMG2VID_FAKE_LOG`` (a file
    that gets one ``start <seed>`` line per run) and ``IMG2VID_FAKE_FAIL`` (an ``img2vid.errors`` class
    that every job raises, see :func:`failing_with`)."""
    log = os.environ.get("IMG2VID_FAKE_LOG")
    fail = os.environ.get("IMG2VID_FAKE_FAIL")
    return FakeEngine(
        delay=float(os.environ.get("IMG2VID_FAKE_DELAY", "0")),
        log_path=Path(log) if log else None,
        fail_with=failing_with(fail) if fail else None,
    )


def assert_same_frames(actual: np.ndarray, expected: np.ndarray, tolerance: float = 6.0) -> None:
    """The decoded video shows the expected frames (H.264 is lossy: compare the mean error)."""
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    error = float(np.mean(np.abs(actual.astype(np.int16) - expected.astype(np.int16))))
    assert error < tolerance, f"mean absolute difference {error:.1f} >= {tolerance}"
