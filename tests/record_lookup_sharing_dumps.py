"""Record the kernel dumps `test_kernel_lookup_sharing.py` feeds to `_lookup_sharing` (root).

Builds each scenario in a scratch network namespace of its own (a unique name, removed
afterwards), dumps its policy rules and its main and local tables for both families, and
writes the raw messages (no netlink header) as hex to ``kernel_dumps/lookup_sharing.json``.
Run it again when a scenario changes or to check a new kernel:

    sudo .venv/bin/python tests/record_lookup_sharing_dumps.py
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from nosdn.backends.kernel import _netlink as nl

OUT = Path(__file__).with_name("kernel_dumps") / "lookup_sharing.json"

#: The host every scenario starts from: a /16 and a /64 on a bridge, and a second device
#: with a /24 and a /32 of this host inside the /16.
HOST = [
    "link add br0 type bridge",
    "link set br0 up",
    "addr add 10.0.0.1/16 dev br0",
    "addr add fd00::1/64 dev br0 nodad",
    "link add d1 type veth peer name d1p",
    "link set d1 up",
    "link set d1p up",
    "addr add 10.0.9.9/32 dev d1",
    "addr add 192.168.50.1/24 dev d1",
]

#: Scenario name -> what is added to the host.
SCENARIOS: dict[str, list[str]] = {
    "host": [],
    "more_specific": [
        "route add 10.0.5.0/24 via 10.0.0.254 proto static",
        "route add blackhole 10.0.7.7/32",
        "route add 10.0.3.0/24 dev br0 tos 0x10",
        "-6 route add fd00::80/121 via fd00::fe",
    ],
    "not_plain": [
        "route add 10.2.0.0/24 nexthop dev br0 nexthop dev d1",  # multipath, no gateway
        "route add 10.3.0.0/16 via 10.0.0.254",  # a gateway route
        "nexthop add id 5 dev br0",
        "route add 10.4.0.0/24 nhid 5",  # through a nexthop object
    ],
    "extra_rule": ["rule add fwmark 7 lookup main priority 200"],
}


def ip(ns: str, words: str) -> None:
    subprocess.run(["ip", "-n", ns, *words.split()], check=True, capture_output=True)


def dumps(ns: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with nl.Netlink(ns) as link:
        for fam, v in ((socket.AF_INET, "4"), (socket.AF_INET6, "6")):
            out[f"rules{v}"] = [p.hex() for p in link.rule_payloads(fam)]
            out[f"main{v}"] = [p.hex() for p in link.route_payloads(fam, 254)]
            out[f"local{v}"] = [p.hex() for p in link.route_payloads(fam, 255)]
    return out


def record(name: str, extra: list[str]) -> dict[str, list[str]]:
    ns = f"nosdn-rec-{secrets.token_hex(4)}"
    subprocess.run(["ip", "netns", "add", ns], check=True, capture_output=True)
    try:
        ip(ns, "link set lo up")
        for words in HOST + extra:
            ip(ns, words)
        return dumps(ns)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def main() -> None:
    found = {name: record(name, extra) for name, extra in SCENARIOS.items()}
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(found, indent=1, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
