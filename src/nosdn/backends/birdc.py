"""Reading BIRD's ``show protocols all``: the BGP sessions, their state, since when, what they
export, and the fix when one is down. Pure text parsing, unit-tested from recorded output.

BIRD has no machine-readable output over its control socket; ``birdc`` prints a table line per
protocol (name, proto, table, state, since, info) followed by indented detail lines. Only BGP
protocols are read; the fix is inferred from the state and BIRD's ``Last error`` line, which is
what an operator would look at first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HEAD = re.compile(r"^(\S+)\s+BGP\s+\S+\s+(\S+)\s+(\S+(?: \S+)?)\s*(.*)$")
_TIME = re.compile(r"^\d{2}:\d{2}:\d{2}(\.\d+)?$|^\d{4}-\d{2}-\d{2}")


@dataclass(frozen=True, slots=True)
class Session:
    """One BGP protocol of BIRD as ``show protocols all`` prints it."""

    name: str
    #: BIRD's protocol state (up, start, down)
    state: str
    since: str
    #: the BGP state (Established, Active, Connect, Idle, OpenSent, ...)
    bgp_state: str
    neighbor: str = ""
    neighbor_as: int | None = None
    local_as: int | None = None
    last_error: str = ""
    exported: int = 0
    info: str = ""

    @property
    def established(self) -> bool:
        return self.bgp_state == "Established"

    def fix(self) -> str:
        """What to do when the session is not established ('' when it is)."""
        if self.established:
            return ""
        err = self.last_error.lower()
        if "bad peer as" in err or "bad_peer_as" in err:
            return (
                f"the peer refused AS {self.local_as}, or it is not AS {self.neighbor_as}: make "
                "--bgp-asn and --bgp-peer ADDRESS:ASN match the router's neighbour config"
            )
        if "authentication" in err or "md5" in err:
            return "MD5 mismatch: give both sides the same password (--bgp-password-file)"
        if "no route to host" in err or "network is unreachable" in err:
            return (
                f"peer {self.neighbor} is unreachable from this node: check its address, the "
                "link, or --bgp-multihop for a router that is not directly connected"
            )
        if "connection refused" in err:
            return f"peer {self.neighbor} refuses TCP 179: it has no BGP neighbour for this node"
        if "hold timer" in err or "timed out" in err or self.bgp_state in ("Active", "Connect"):
            return (
                f"no BGP answer from {self.neighbor}: an MD5 mismatch (the router drops "
                "unsigned or wrongly signed segments silently), the router not listening for "
                "this node's address, or a firewall on TCP 179"
            )
        if self.state == "down":
            return "the protocol is disabled in BIRD: birdc enable it, or restart the agent"
        return (
            "the session is being set up; if it stays so, check the router's neighbour "
            "config (ASN, listen range) against this node's"
        )


def parse_protocols(text: str) -> list[Session]:
    """The BGP sessions of ``birdc show protocols all`` output (``show protocols`` works too,
    with fewer fields)."""
    out: list[Session] = []
    cur: dict[str, str] | None = None

    def close() -> None:
        if cur is not None:
            out.append(_session(cur))

    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            m = _HEAD.match(line)
            close()
            cur = None
            if m is not None:
                since, info = m.group(3), m.group(4)
                if " " in since and not _TIME.match(since.split(" ", 1)[1]):
                    since, rest = since.split(" ", 1)
                    info = f"{rest} {info}".strip()
                cur = {"name": m.group(1), "state": m.group(2), "since": since, "info": info}
            continue
        if cur is None:
            continue
        key, sep, value = line.strip().partition(":")
        if not sep:
            continue
        value = value.strip()
        if key == "BGP state":
            cur["bgp_state"] = value
        elif key == "Neighbor address":
            cur["neighbor"] = value
        elif key in ("Neighbor AS", "Local AS", "Last error"):
            cur[key] = value
        elif key == "Routes":
            m2 = re.search(r"(\d+) exported", value)
            if m2:
                cur["exported"] = str(int(cur.get("exported", "0")) + int(m2.group(1)))
    close()
    return out


def _int(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _session(d: dict[str, str]) -> Session:
    info = d.get("info", "").strip()
    bgp_state = d.get("bgp_state") or (info.split()[0] if info else "")
    return Session(
        name=d["name"],
        state=d["state"],
        since=d["since"],
        bgp_state=bgp_state,
        neighbor=d.get("neighbor", ""),
        neighbor_as=_int(d.get("Neighbor AS")),
        local_as=_int(d.get("Local AS")),
        last_error=d.get("Last error", "") or " ".join(info.split()[1:]),
        exported=int(d.get("exported", "0")),
        info=info,
    )
