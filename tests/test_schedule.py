"""The pass scheduler both daemons share: nudges coalesce, failures retry with backoff."""

from __future__ import annotations

import threading
import time

from nosdn.daemon.schedule import Nudger, run_passes


def test_failed_pass_is_retried_without_a_nudge_and_nudges_coalesce() -> None:
    stop = threading.Event()
    nudger = Nudger()
    calls: list[tuple[set[str], bool, float]] = []

    def run_pass(reasons: set[str], full: bool) -> bool:
        calls.append((set(reasons), full, time.monotonic()))
        if len(calls) >= 3:
            stop.set()
        return len(calls) >= 3  # the first two passes fail

    nudger.nudge("a")
    nudger.nudge("b")
    t = threading.Thread(
        target=run_passes,
        kwargs={
            "stop": stop,
            "nudger": nudger,
            "resync": 60.0,
            "run_pass": run_pass,
            "heartbeat": lambda _now: None,
        },
    )
    t.start()
    t.join(5)
    assert not t.is_alive()
    first, second, third = calls
    assert first[0] == {"a", "b", "resync"}
    assert first[1] is True
    assert second[0] == {"retry"}
    assert second[1] is False
    assert third[0] == {"retry"}
    # backoff doubles: 0.5 s, then 1 s
    assert 0.4 < second[2] - first[2] < 0.9
    assert 0.9 < third[2] - second[2] < 1.5
