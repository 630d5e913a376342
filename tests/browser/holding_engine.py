"""An engine for the browser tests whose jobs take a few short steps and can be held half-way.

Its progress moves in steps (so a page's progress bar has something to show) and, while the file named
by ``IMG2VID_STEP_HOLD`` exists, a job waits half-way (so a test can reload the page, cancel, or restart
the server while a job is surely running, without guessing at timings). Its frames are FakeEngine's, a
pure function of the request. It honours cancel at every step, as a real engine must.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from img2vid.engines.base import CancelCheck, ProgressCallback, raise_if_cancelled
from img2vid.request import VideoRequest
from img2vid.video import Video
from support.fake_engine import FakeEngine, expected_frames


class HoldingEngine(FakeEngine):
    def __init__(self, *, steps: int = 4, step_seconds: float = 0.1, hold: Path | None = None) -> None:
        super().__init__()
        self.steps = steps
        self.step_seconds = step_seconds
        self.hold = hold

    def generate(self, request: VideoRequest, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> Video:
        for step in range(self.steps):
            raise_if_cancelled(cancel)
            if progress is not None:
                progress(step / self.steps, f"step {step + 1}/{self.steps}")
            if step == self.steps // 2:
                while self.hold is not None and self.hold.exists():
                    raise_if_cancelled(cancel)
                    if progress is not None:  # repeated, as a real engine's steps are (the server throttles writes)
                        progress(step / self.steps, f"step {step + 1}/{self.steps}")
                    time.sleep(0.05)
            time.sleep(self.step_seconds)
        if progress is not None:
            progress(1.0, "done")
        return Video(frames=expected_frames(request), fps=7, seed=request.seed)


def from_env() -> HoldingEngine:
    """``IMG2VID_STEP_HOLD`` (a file that holds each job half-way while it exists), ``IMG2VID_STEP_SECONDS``."""
    hold = os.environ.get("IMG2VID_STEP_HOLD")
    return HoldingEngine(step_seconds=float(os.environ.get("IMG2VID_STEP_SECONDS", "0.1")), hold=Path(hold) if hold else None)
