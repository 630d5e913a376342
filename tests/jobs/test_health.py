"""The health probe: a service that hangs is down within the probe's timeout, answers are reused for a short
while, and a hung check is shared rather than piled up."""

from __future__ import annotations

import threading
import time

from img2vid.jobs.health import Probe


def test_a_hung_check_is_down_within_the_timeout_and_is_not_started_twice() -> None:
    release = threading.Event()
    calls: list[int] = []

    def hang() -> int:
        calls.append(1)
        release.wait(10)
        return 7

    probe = Probe("hangs", hang, timeout=0.2, ttl=0.0)
    started = time.monotonic()
    first = probe.read()
    assert not first.ok and first.error and time.monotonic() - started < 0.5
    second = probe.read()  # the check in flight is past its deadline: down at once
    assert not second.ok and time.monotonic() - started < 0.6
    assert len(calls) == 1
    release.set()
    time.sleep(0.05)
    third = probe.read()
    assert third.ok and third.value == 7


def test_answers_are_cached_for_ttl_and_failures_name_only_the_type() -> None:
    outcomes = iter([ValueError("redis://:pw@host"), 3, 4])

    def check() -> int:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    now = [0.0]
    probe = Probe("flaky", check, timeout=1.0, ttl=0.5, clock=lambda: now[0])
    down = probe.read()
    assert not down.ok and down.error == "ValueError"
    now[0] = 0.4
    assert probe.read() is down  # still fresh
    now[0] = 0.6
    assert probe.read().value == 3
    now[0] = 1.2
    assert probe.read().value == 4
