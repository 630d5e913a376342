"""A model-free engine for the scale-out tests and benchmark: it "denoises" in steps whose length you set.

Configured from ``IMG2VID_STEP_*`` variables so that a worker started as a subprocess with
``IMG2VID_ENGINE_FACTORY=support.step_engine:from_env`` gets it:

- ``IMG2VID_STEP_SECONDS`` (default 0.05) and ``IMG2VID_STEP_COUNT`` (default 4): the job's length; a
  request's own ``steps`` field wins over the count, as it does with the local engine, so one test can
  mix short and long jobs on the same workers;
- ``IMG2VID_STEP_LOG``: a file that gets one ``<event> <pid> <seed> <step>`` line per event (start, step,
  done, cancelled), so a test can tell which process ran what, and how far a cancelled job got;
- ``IMG2VID_STEP_KILL_SEED``: a job with this seed kills its worker process (``os._exit``) at its
  second step: the poison job.

Its frames are a pure function of the request (tests/support/fake_engine.py's ``expected_frames``), so a
job re-run on another worker makes the same video.
"""

from __future__ import annotations

import os
import time

from img2vid.engines.base import CancelCheck, Engine, ProgressCallback, raise_if_cancelled
from img2vid.errors import CancelledError
from img2vid.fitting import MultipleOf
from img2vid.request import VideoRequest
from img2vid.video import Video

from .fake_engine import expected_frames


class StepEngine(Engine):
    size_rule = MultipleOf(16, 2048 * 2048)

    def __init__(self, *, step_seconds: float = 0.05, steps: int = 4, log: str | None = None, kill_seed: int | None = None) -> None:
        self.step_seconds = step_seconds
        self.steps = steps
        self.log = log
        self.kill_seed = kill_seed

    def _note(self, event: str, seed: int, step: int) -> None:
        if self.log:
            with open(self.log, "a", encoding="utf-8") as out:
                out.write(f"{event} {os.getpid()} {seed} {step}\n")

    def generate(self, request: VideoRequest, progress: ProgressCallback | None = None, cancel: CancelCheck | None = None) -> Video:
        steps = request.steps or self.steps
        self._note("start", request.seed, 0)
        for step in range(1, steps + 1):
            try:
                raise_if_cancelled(cancel)
            except CancelledError:
                self._note("cancelled", request.seed, step - 1)
                raise
            if self.kill_seed is not None and request.seed == self.kill_seed and step == 2:
                os._exit(17)
            time.sleep(self.step_seconds)
            self._note("step", request.seed, step)
            if progress is not None:
                progress(step / steps, f"step {step}/{steps}")
        self._note("done", request.seed, steps)
        return Video(frames=expected_frames(request), fps=7, seed=request.seed)


def from_env() -> StepEngine:
    kill = os.environ.get("IMG2VID_STEP_KILL_SEED")
    return StepEngine(
        step_seconds=float(os.environ.get("IMG2VID_STEP_SECONDS", "0.05")),
        steps=int(os.environ.get("IMG2VID_STEP_COUNT", "4")),
        log=os.environ.get("IMG2VID_STEP_LOG") or None,
        kill_seed=int(kill) if kill else None,
    )
