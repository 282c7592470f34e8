"""The rules both daemons' options follow (the agent's `AgentConfig`, the controller's
`ControllerConfig`): one error type, one way to read ``--metrics-address``."""

from __future__ import annotations


class ConfigError(ValueError):
    """An option value refused before the daemon starts (the message names the option, the
    value and what to use)."""


def check_metrics_address(address: str | None, default_port: int) -> None:
    """Refuse a ``--metrics-address`` that is not HOST:PORT (None or '' turn the server off)."""
    if address is None:
        return
    _host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ConfigError(
            f"--metrics-address {address!r}: use HOST:PORT, "
            f"e.g. 0.0.0.0:{default_port} (or --metrics-address '' to disable)"
        )


def metrics_host_port(address: str | None) -> tuple[str, int] | None:
    """Where the metrics server listens, from a checked ``--metrics-address`` (None: off)."""
    if not address:
        return None
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "0.0.0.0", int(port)
