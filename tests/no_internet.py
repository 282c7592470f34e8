"""A guard for the cloud tests: nothing may leave this machine.

The cloud SDKs know their real endpoints (ec2.us-east-1.amazonaws.com, compute.googleapis.com,
the GCE metadata server, STS...). A test that forgot to point one at the local server must fail,
not quietly talk to the internet: ``no_internet`` refuses and records every name lookup and
connection to anything but loopback, and fails the test at teardown if anything tried.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from typing import Any

import pytest

_LOCAL = ("localhost", "127.0.0.1", "::1", "", None)


def _is_local(host: object) -> bool:
    if host in _LOCAL:
        return True
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


@pytest.fixture
def no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Refuse (and record) every name lookup or connection to anything but this machine; the
    test fails at teardown if anything tried."""
    tried: list[str] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        if not _is_local(host):
            tried.append(f"resolve {host}")
            raise socket.gaierror(f"test guard: no lookups of {host}")
        return real_getaddrinfo(host, *args, **kw)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple) and not _is_local(address[0]):
            tried.append(f"connect {address}")
            raise OSError(f"test guard: no connections to {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    yield tried
    assert not tried, f"something tried to leave this machine: {tried}"
