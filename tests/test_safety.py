"""The deletion guard alone, on a fake clock: the window, the hold, the release."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from nosdn.daemon.safety import DeletionGuard, held_message, release_hint
from nosdn.model import Diff, InstalledRoute


def removing(n: int, start: int = 0) -> Diff:
    return Diff(
        (),
        (),
        tuple(
            InstalledRoute(
                ip_network(f"10.{(i >> 8) & 255}.{i & 255}.0/24"), (ip_address("10.0.0.1"),), True
            )
            for i in range(start, start + n)
        ),
        (),
        (),
    )


class Setup:
    def __init__(self, **kw: float) -> None:
        self.now = 0.0
        self.relists = 0
        self.asked = 0
        self.token: str | None = None
        self.guard = DeletionGuard(
            0.5,
            lambda: self.relists,
            self.ask,
            release=lambda: self.token,
            clock=lambda: self.now,
            **kw,
        )

    def ask(self) -> None:
        self.asked += 1


def test_a_burst_over_several_passes_is_caught_by_the_window() -> None:
    s = Setup()
    owned = 150
    allowed = 0
    for chunk in (30, 35, 35, 35):  # 90% of 150 nodes deleted, a few ms apart
        s.now += 0.005
        got = s.guard.check(removing(chunk, allowed), owned)
        allowed_now = len(got.remove)
        allowed += allowed_now
        owned -= allowed_now
    assert allowed == 65  # 43%: under the share, then the window is full
    assert s.guard.state.held == 35
    assert s.asked == 0  # the same API a moment later confirms nothing


def test_removals_spread_wider_than_the_window_go_through() -> None:
    s = Setup(window=60)
    owned = 100
    for _ in range(4):
        got = s.guard.check(removing(20), owned)
        assert len(got.remove) == 20
        owned -= 20
        s.now += 61
    assert s.guard.state.held == 0


def test_the_hold_ends_with_a_fresh_list_after_the_hold_time() -> None:
    s = Setup(hold=300)
    assert s.guard.check(removing(90), 100).remove == ()
    assert s.guard.seconds_left() == 300
    s.relists += 5  # lists during the hold confirm nothing
    s.now = 299
    assert s.guard.check(removing(90), 100).remove == ()
    s.now = 300
    assert s.guard.check(removing(90), 100).remove == ()
    assert s.asked == 1
    assert s.guard.check(removing(90), 100).remove == ()  # no list yet, asked only once
    assert s.asked == 1
    s.relists += 1
    assert len(s.guard.check(removing(90), 100).remove) == 90
    assert s.guard.state.held == 0
    assert s.guard.seconds_left() is None
    # the confirmed shrink is the new normal: the next small removal is not counted with it
    assert len(s.guard.check(removing(1), 10).remove) == 1


def test_a_new_release_token_lets_the_held_removals_go_at_once() -> None:
    s = Setup()
    s.token = "left-over"
    assert s.guard.check(removing(90), 100).remove == ()
    assert s.guard.check(removing(90), 100).remove == ()  # the same token releases nothing
    s.token = "2026-12-02T20:00:00Z"
    assert len(s.guard.check(removing(90), 100).remove) == 90
    assert s.asked == 0


def test_no_hold_time_means_the_next_list_confirms() -> None:
    s = Setup(hold=0)
    assert s.guard.check(removing(3), 4).remove == ()
    assert s.asked == 1
    s.relists += 1
    assert len(s.guard.check(removing(3), 4).remove) == 3


def test_the_message_says_how_to_release() -> None:
    hint = release_hint("lease", "nosdn-controller", "kube-system")
    s = DeletionGuard(0.5, lambda: 0, lambda: None, how_to_release=hint, clock=lambda: 0.0)
    s.check(removing(4), 4)
    text = held_message(s)
    assert text.startswith("holding 4 route removals")
    assert (
        "kubectl -n kube-system annotate lease nosdn-controller nosdn.io/release-deletions=" in text
    )
