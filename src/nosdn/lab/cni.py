"""Just enough of libcni to run a conflist with the real plugins, as a container runtime does.

containerd and CRI-O hand a pod to CNI through libcni: for ADD each plugin of the list runs in
order with the list's ``name`` and ``cniVersion`` and the previous plugin's result as
``prevResult``; DEL runs them in reverse, each given the cached ADD result. Runtimes bring the
pod's ``lo`` up with the ``loopback`` plugin separately. Doing the same here (and nothing more)
means the lab tests the conflist nosdn ships exactly as a kubelet would use it.

Plugins run inside the *node's* namespace (``ip netns exec NODE plugin``), so the bridge and
its gateway address are made on the lab's node, never on this machine; ``CNI_NETNS`` points at
the pod's namespace. The runtime's only other job is ``capabilities``: libcni injects
``runtimeConfig`` only for capabilities it has values for, and the lab has no port mappings.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nosdn.lab.netns import LabError, exec_argv, run

DEFAULT_CNI_PATH = ("/usr/lib/cni", "/opt/cni/bin")
LOOPBACK_CONF: dict[str, Any] = {"cniVersion": "1.0.0", "name": "cni-loopback", "type": "loopback"}


class CniError(LabError):
    """A plugin failed; carries the CNI error code and message the plugin printed."""

    def __init__(self, plugin: str, command: str, code: int | None, msg: str, details: str = ""):
        self.plugin = plugin
        self.command = command
        self.code = code
        self.msg = msg
        self.details = details
        tail = f" ({details})" if details else ""
        super().__init__(f"CNI {command} with plugin {plugin!r} failed (code {code}): {msg}{tail}")


def cni_path_from_env() -> tuple[str, ...]:
    env = os.environ.get("CNI_PATH")
    return tuple(p for p in env.split(":") if p) if env else DEFAULT_CNI_PATH


def find_plugin(plugin: str, cni_path: Sequence[str]) -> Path:
    for d in cni_path:
        candidate = Path(d) / plugin
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise LabError(
        f"CNI plugin {plugin!r} not found in {':'.join(cni_path)} — install the reference "
        "plugins (Debian: apt-get install containernetworking-plugins) or set CNI_PATH"
    )


@dataclass(frozen=True, slots=True)
class Attachment:
    """One pod interface, as the CNI arguments name it."""

    container_id: str
    netns_path: str
    ifname: str = "eth0"


@dataclass(frozen=True, slots=True)
class CniRunner:
    """Runs plugins from ``cni_path`` inside the namespace ``host_netns``."""

    host_netns: str
    cni_path: tuple[str, ...] = DEFAULT_CNI_PATH
    timeout: float = 30

    def exec_plugin(
        self, command: str, conf: Mapping[str, Any], att: Attachment
    ) -> dict[str, Any] | None:
        plugin = str(conf["type"])
        binary = find_plugin(plugin, self.cni_path)
        env = {
            **os.environ,
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": att.container_id,
            "CNI_NETNS": att.netns_path,
            "CNI_IFNAME": att.ifname,
            "CNI_PATH": ":".join(self.cni_path),
        }
        env.pop("CNI_ARGS", None)
        proc = run(
            exec_argv(self.host_netns, [str(binary)]),
            input=json.dumps(conf),
            env=env,
            timeout=self.timeout,
            check=False,
        )
        if proc.returncode != 0:
            try:
                error = json.loads(proc.stdout)
                code = error.get("code")
                msg = str(error.get("msg", "")) or proc.stderr.strip()
                details = str(error.get("details", ""))
            except (ValueError, AttributeError):
                code, msg, details = None, (proc.stderr or proc.stdout).strip(), ""
            raise CniError(plugin, command, code, msg or f"exit code {proc.returncode}", details)
        if command != "ADD":
            return None
        try:
            result: dict[str, Any] = json.loads(proc.stdout)
        except ValueError:
            raise CniError(
                plugin, command, None, f"printed no JSON result: {proc.stdout!r}"
            ) from None
        return result

    def add_list(self, conflist: Mapping[str, Any], att: Attachment) -> dict[str, Any]:
        """ADD every plugin in order, chaining ``prevResult``; the last result is the pod's."""
        prev: dict[str, Any] | None = None
        for plugin_conf in conflist["plugins"]:
            conf = _one_config(conflist, plugin_conf, prev)
            prev = self.exec_plugin("ADD", conf, att)
        if prev is None:
            raise LabError(f"conflist {conflist.get('name')!r} has no plugins")
        return prev

    def del_list(
        self, conflist: Mapping[str, Any], att: Attachment, cached: Mapping[str, Any] | None
    ) -> None:
        """DEL every plugin in reverse order, each given the cached ADD result."""
        for plugin_conf in reversed(conflist["plugins"]):
            self.exec_plugin("DEL", _one_config(conflist, plugin_conf, cached), att)

    def add_loopback(self, att: Attachment) -> None:
        self.exec_plugin("ADD", LOOPBACK_CONF, Attachment(att.container_id, att.netns_path, "lo"))


def _one_config(
    conflist: Mapping[str, Any], plugin_conf: Mapping[str, Any], prev: Mapping[str, Any] | None
) -> dict[str, Any]:
    conf = dict(plugin_conf)
    conf["name"] = conflist["name"]
    conf["cniVersion"] = conflist["cniVersion"]
    if prev is not None:
        conf["prevResult"] = prev
    return conf


def result_ips(result: Mapping[str, Any], ifname: str = "eth0") -> list[str]:
    """The addresses (without prefix length) a CNI 1.0 result gives the pod's ``ifname``."""
    sandbox_ifaces = {
        i
        for i, iface in enumerate(result.get("interfaces", []))
        if iface.get("name") == ifname and iface.get("sandbox")
    }
    ips = []
    for ip in result.get("ips", []):
        if "interface" not in ip or ip["interface"] in sandbox_ifaces:
            ips.append(str(ip["address"]).split("/")[0])
    return ips
