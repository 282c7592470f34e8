"""BIRD on the node, supervised: start it (or adopt the one already running), write its config
atomically, ``birdc configure`` only when the text changed, read the sessions, restart it if
it died.

BIRD runs as a daemon of its own (it forks away from the agent), with its control socket and
pid file in one directory (``--bgp-dir``). So an agent killed with SIGKILL, restarted or
upgraded leaves BIRD and its sessions up: the routers keep the routes, and the next agent finds
BIRD by its control socket and adopts it. If BIRD itself dies, graceful restart keeps the
routers' routes for the restart time while this supervisor starts it again.

A config is checked with ``bird -p`` before it replaces the one BIRD reads: a text BIRD refuses
changes nothing (the old config stays loaded) and is reported.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from nosdn.backends.birdc import Session, parse_protocols

log = logging.getLogger("nosdn.agent.bgp")

DEFAULT_DIR = Path("/run/nosdn-bird")
CONF = "bird.conf"
SOCKET = "bird.ctl"
PIDFILE = "bird.pid"
TIMEOUT = 10.0


class BirdError(RuntimeError):
    """BIRD could not be started, configured or read (the message says what to do)."""


@dataclass(slots=True)
class BirdSupervisor:
    """One BIRD in ``directory`` (config, control socket, pid file), run in ``netns`` when
    given (the agent's ``--netns``)."""

    directory: Path = DEFAULT_DIR
    netns: str | None = None
    bird: str = "bird"
    birdc: str = "birdc"
    #: the config text BIRD was last told to load (None: none yet, by this agent)
    loaded: str | None = None
    starts: int = 0
    configures: int = 0
    adopted: bool = False
    _prefix: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._prefix = ["ip", "netns", "exec", self.netns] if self.netns else []

    @property
    def conf(self) -> Path:
        return self.directory / CONF

    @property
    def socket(self) -> Path:
        return self.directory / SOCKET

    def _run(self, *argv: str) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                [*self._prefix, *argv],
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            raise BirdError(f"{argv[0]}: {e} — is bird2 installed (Debian package bird2)?") from e

    def _birdc(self, *cmd: str) -> subprocess.CompletedProcess[str]:
        return self._run(self.birdc, "-s", str(self.socket), *cmd)

    def alive(self) -> bool:
        """Whether a BIRD answers on the control socket."""
        if not self.socket.exists():
            return False
        try:
            r = self._birdc("show", "status")
        except BirdError:
            return False
        return r.returncode == 0 and "Daemon is up" in r.stdout

    def _write(self, text: str) -> bool:
        """Write ``text`` as the config if it differs (checked by ``bird -p`` first, renamed
        into place, mode 0600: it may hold an MD5 password). Returns whether it changed."""
        try:
            if self.conf.read_text() == text:
                return False
        except OSError:
            pass
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(prefix=".bird-", suffix=".conf", dir=self.directory)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            r = self._run(self.bird, "-p", "-c", tmp)
            if r.returncode != 0:
                raise BirdError(
                    f"BIRD refuses the config nosdn made ({(r.stderr or r.stdout).strip()}); "
                    "the one loaded stays — report this as a nosdn bug"
                )
            os.replace(tmp, self.conf)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return True

    def sync(self, text: str) -> bool:
        """Make the running BIRD run ``text``: write it if it changed, start BIRD if none
        answers (adopting a running one), configure it if it runs an older text. Returns
        whether anything was done."""
        changed = self._write(text)
        if not self.alive():
            self._start()
            self.loaded = text
            return True
        if self.loaded is None and not changed:
            self.adopted = True  # a BIRD the last agent left, already on this text
            log.info("adopted the running BIRD on %s", self.socket)
            self.loaded = text
            return False
        if changed or self.loaded != text:
            r = self._birdc("configure")
            if r.returncode != 0 or "error" in r.stdout.lower():
                raise BirdError(f"birdc configure failed: {(r.stdout + r.stderr).strip()}")
            self.configures += 1
            self.loaded = text
            log.info("BIRD reconfigured (%s)", self.conf)
            return True
        return False

    def _start(self) -> None:
        if self.socket.exists():
            self.socket.unlink()  # a dead BIRD's socket: BIRD would refuse to start on it
        r = self._run(
            self.bird,
            "-c",
            str(self.conf),
            "-s",
            str(self.socket),
            "-P",
            str(self.directory / PIDFILE),
        )
        if r.returncode != 0:
            raise BirdError(f"bird did not start: {(r.stderr or r.stdout).strip()}")
        self.starts += 1
        log.info("started BIRD (%s, socket %s)", self.conf, self.socket)

    def sessions(self) -> list[Session]:
        """The BGP sessions as BIRD sees them now; raises `BirdError` when BIRD does not
        answer."""
        r = self._birdc("show", "protocols", "all")
        if r.returncode != 0:
            raise BirdError(
                f"BIRD does not answer on {self.socket}: {(r.stderr or r.stdout).strip()}"
            )
        return parse_protocols(r.stdout)

    def stop(self) -> None:
        """Stop BIRD (tests and ``--bgp=false`` clean-ups only: the agent leaves it running)."""
        pid = self.directory / PIDFILE
        with contextlib.suppress(OSError, ValueError):
            os.kill(int(pid.read_text().strip()), 15)


def read_sessions(directory: Path = DEFAULT_DIR, netns: str | None = None) -> list[Session]:
    """The sessions of the agent's BIRD, for ``nosdn status`` and ``doctor``."""
    return BirdSupervisor(directory, netns).sessions()
