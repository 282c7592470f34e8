"""Status-only events recognized from their bytes (`nosdn.sources.statusonly`) must change
nothing a full decode would not: a differential test.

Two reflectors read the same event lines: one the way the agent does (each line offered to
`NodeCache.quick` first, decoded only when it says so), one decoding every line. After every
event their caches (nodes, generation, event counts, this node's object) and resourceVersions
must be equal, and they must fail alike. The lines are random mutations of kubelet-like Nodes,
written in random ways: compact or spaced, whitespace anywhere JSON allows it, keys reordered,
letters and non-ASCII characters as ``\\u`` escapes, keys named ``spec``/``addresses``/
``podCIDRs`` in labels and annotations, JSON text inside annotation values, spec or addresses
missing or null, resourceVersion missing or a number, and DELETED, BOOKMARK and ERROR events.
The test also checks it did exercise the short path (most heartbeats take it).
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from nosdn.sources import statusonly
from nosdn.sources.cache import NodeCache
from nosdn.sources.errors import ApiError
from nosdn.sources.kubernetes import split_list
from nosdn.sources.reflector import Reflector

SELF = "self-node"
NAMES = ["n1", "n2", "nöde-3", "n4", "n5", SELF]


def node(name: str, i: int) -> dict[str, Any]:
    cidr = f"10.244.{i}.0/24"
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": f"uid-{i}",
            "resourceVersion": str(100 + i),
            "labels": {"kubernetes.io/hostname": name},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
            "managedFields": [
                {"manager": "kubelet", "fieldsV1": {"f:status": {"f:addresses": {".": {}}}}}
            ],
        },
        "spec": {"podCIDR": cidr, "podCIDRs": [cidr], "providerID": f"fake://{name}"},
        "status": {
            "conditions": [
                {"type": "Ready", "status": "True", "lastHeartbeatTime": "t0"},
                {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated"},
            ],
            "addresses": [
                {"type": "InternalIP", "address": f"10.0.0.{i}"},
                {"type": "Hostname", "address": name},
            ],
            "images": [{"names": [f"img-{i}"], "sizeBytes": 1}],
        },
    }


# --- a JSON writer with every liberty JSON allows ---------------------------------------------


class Writer:
    """Writes one event. ``style`` is the stream's (a server writes every event alike): compact
    (Go), spaced (Python), or odd whitespace anywhere JSON allows it (the same for the same
    place in every event, as a fixed server would); now and then an event also comes with
    letters escaped or its keys reordered."""

    def __init__(self, rng: random.Random, style: str) -> None:
        self.rng = rng
        self.style = style
        self.escape = rng.random() < 0.05
        self.shuffle = rng.random() < 0.05
        self.spaces = random.Random(0)

    def event(self, v: Any) -> bytes:
        self.spaces = random.Random(0)
        return self.write(v).encode()

    def ws(self) -> str:
        if self.style == "odd":
            return self.spaces.choice(["", "", " ", "  ", "\t", " \r "])
        return ""

    def string(self, s: str) -> str:
        if not self.escape:
            return json.dumps(s, ensure_ascii=False)
        out = []
        for ch in s:
            if ch in {'"', "\\"} or not 0x20 <= ord(ch) <= 0x7E:
                out.append(json.dumps(ch)[1:-1])  # \\uXXXX for non-ASCII
            elif self.rng.random() < 0.2:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'

    def write(self, v: Any) -> str:
        if isinstance(v, dict):
            items = list(v.items())
            if self.shuffle and self.rng.random() < 0.5:
                self.rng.shuffle(items)
            if not items:
                return "{" + self.ws() + "}"
            colon = ": " if self.style == "spaced" else ":"
            comma = ", " if self.style == "spaced" else ","
            parts = [
                self.ws() + self.string(k) + self.ws() + colon + self.ws() + self.write(x)
                for k, x in items
            ]
            return "{" + (comma + self.ws()).join(parts) + self.ws() + "}"
        if isinstance(v, list):
            comma = ", " if self.style == "spaced" else ","
            return "[" + (comma + self.ws()).join(self.write(x) for x in v) + self.ws() + "]"
        if isinstance(v, str):
            return self.string(v)
        return json.dumps(v)


# --- mutations ----------------------------------------------------------------------------------


def heartbeat(o: dict[str, Any], k: int, rng: random.Random) -> None:
    status = o.get("status")
    if not isinstance(status, dict):  # mutated away: the heartbeat goes elsewhere
        o["metadata"]["annotations"]["heartbeat"] = f"t{k}"
        return
    conds = status.setdefault("conditions", [{}, {}])
    conds[0]["lastHeartbeatTime"] = f"t{k}"
    if rng.random() < 0.3:
        status.setdefault("images", []).append({"names": [f"img-x{k}"], "sizeBytes": k})
    if rng.random() < 0.2:
        conds[1]["status"] = rng.choice(["True", "False"])


def mutate(o: dict[str, Any], k: int, rng: random.Random) -> None:
    """One change, routing-relevant or not, plain or tricky."""
    spec = o.get("spec")
    status = o.get("status")
    meta = o["metadata"]
    choice = rng.randrange(24)
    if choice == 0 and isinstance(spec, dict):
        spec["podCIDRs"] = [f"10.245.{k % 250}.0/24"]
    elif choice == 1 and isinstance(spec, dict):
        spec["podCIDR"] = f"10.246.{k % 250}.0/24"
        spec.pop("podCIDRs", None)
    elif choice == 2 and isinstance(spec, dict):
        spec["providerID"] = f"fake://other-{k}"
    elif choice == 3:
        o.pop("spec", None)
    elif choice == 4:
        o["spec"] = None
    elif choice == 5:
        o["spec"] = {"podCIDRs": [f"10.244.{k % 250}.0/24"]}
    elif choice == 6 and isinstance(spec, dict):
        spec["taints"] = [{"key": "k", "effect": "NoSchedule"}]  # spec bytes move, routing not
    elif choice == 7 and isinstance(status, dict) and status.get("addresses"):
        status["addresses"][0]["address"] = f"10.0.{k % 250}.9"
    elif choice == 8 and isinstance(status, dict) and status.get("addresses"):
        status["addresses"].reverse()
    elif choice == 9 and isinstance(status, dict):
        status.pop("addresses", None)
    elif choice == 10 and isinstance(status, dict):
        status["addresses"] = None
    elif choice == 11 and isinstance(status, dict):
        status["addresses"] = [{"type": "ExternalIP", "address": f"192.0.2.{k % 250}"}]
    elif choice == 12:
        meta["labels"]["spec"] = "x"  # a key of the same name, elsewhere
    elif choice == 13:
        meta["annotations"]["addresses"] = json.dumps(status and status.get("addresses"))
    elif choice == 14:
        meta["annotations"]["podCIDRs"] = "10.244.9.0/24"
    elif choice == 15:
        # the recorded bytes themselves, inside a string (escaped there)
        meta["annotations"]["last-applied"] = json.dumps({"spec": spec, "status": status})
    elif choice == 16:
        meta["resourceVersion"] = 12345  # not a string
    elif choice == 17:
        meta.pop("resourceVersion", None)
    elif choice == 18:
        o["status"] = None
    elif choice == 19 and isinstance(status, dict):
        status["config"] = {"assigned": {"configMap": {"resourceVersion": f"{k}"}}}
    elif choice == 20 and isinstance(status, dict):
        status["addresses"] = [{"type": "InternalIP", "address": "10.0.0.1\\n"}]
    elif choice == 21 and isinstance(status, dict):
        # not a Node any more: the old spec nested elsewhere, the real one changed
        status["extra"] = {"spec": copy.deepcopy(spec)}
        o["spec"] = {"podCIDRs": [f"10.247.{k % 250}.0/24"]}
    elif choice == 22 and isinstance(status, dict):
        status["extra"] = [{"addresses": copy.deepcopy(status.get("addresses"))}]
        status["addresses"] = [{"type": "InternalIP", "address": f"10.1.{k % 250}.1"}]
    else:
        meta["labels"][f"l{k % 5}"] = f"v{k}"


def events(seed: int, count: int) -> Iterator[bytes]:
    rng = random.Random(seed)
    style = ("compact", "spaced", "odd")[seed % 3]
    objs = {name: node(name, i + 1) for i, name in enumerate(NAMES)}
    rv = 1000
    for k in range(count):
        name = rng.choice(NAMES)
        o = objs[name]
        rv += 1
        if isinstance(o["metadata"].get("resourceVersion"), str):
            o["metadata"]["resourceVersion"] = str(rv)
        r = rng.random()
        w = Writer(rng, style)
        if r < 0.64:
            heartbeat(o, k, rng)
            etype = "MODIFIED" if rng.random() < 0.9 else "ADDED"
        elif r < 0.8:
            mutate(o, k, rng)
            etype = "MODIFIED"
        elif r < 0.88:  # back to a plain node (tricky mutations would pile up otherwise)
            etype = "ADDED"
            objs[name] = o = node(name, NAMES.index(name) + 1)
        elif r < 0.92:
            yield w.event({"type": "DELETED", "object": o})
            objs[name] = node(name, NAMES.index(name) + 1)
            continue
        elif r < 0.96:
            bookmark = {"kind": "Node", "metadata": {"resourceVersion": str(rv)}}
            yield w.event({"type": "BOOKMARK", "object": bookmark})
            continue
        else:
            code = rng.choice([410, 500])
            yield w.event({"type": "ERROR", "object": {"code": code, "message": "m"}})
            continue
        yield w.event({"type": etype, "object": o})


# --- the two readers ----------------------------------------------------------------------------


class Events:
    """A stream of already decoded events: what the reference reflector reads."""

    def __init__(self, items: list[Mapping[str, Any]]) -> None:
        self.items = items

    def __iter__(self) -> Iterator[Mapping[str, Any]]:
        return iter(self.items)

    def close(self) -> None:
        pass


def state(cache: NodeCache) -> tuple[Any, ...]:
    snap = cache.snapshot()
    return (
        snap.nodes,
        snap.generation,
        dict(cache.events),
        dict(cache.ignored),
        cache.self_object,
    )


def step(r: Reflector, line: bytes, rv: str, quick: bool) -> tuple[str, str]:
    try:
        if quick:
            return r._consume_lines(iter([line]), rv), ""
        return r._consume(Events([json.loads(line)]), rv), ""
    except ApiError as e:
        return rv, type(e).__name__


@pytest.mark.parametrize("seed", range(8))
def test_the_short_path_agrees_with_decoding_everything(seed: int) -> None:
    fast = NodeCache(self_name=SELF)
    full = NodeCache(self_name=SELF)
    rf = Reflector(None, fast)  # type: ignore[arg-type]  # no API: lines are handed in
    rs = Reflector(None, full)  # type: ignore[arg-type]
    rv_f = rv_s = ""
    taken: list[bool] = []
    quick = fast.quick

    def counted(line: bytes) -> str | None:
        got = quick(line)
        taken.append(got is not None)
        return got

    fast.quick = counted  # type: ignore[method-assign]
    for i, line in enumerate(events(seed, 1500)):
        rv_f, err_f = step(rf, line, rv_f, quick=True)
        rv_s, err_s = step(rs, line, rv_s, quick=False)
        assert (rv_f, err_f) == (rv_s, err_s), f"event {i}: {line[:200]!r}"
        assert state(fast) == state(full), f"event {i}: {line[:300]!r}"
    assert sum(taken) > 200, f"the short path was taken only {sum(taken)} times"
    assert not all(taken)


def test_rules_say_decode_it_when_in_doubt() -> None:
    o = node("n1", 1)
    line = json.dumps({"type": "MODIFIED", "object": o}).encode()
    marks = statusonly.marks(line, o)
    assert marks is not None
    known = {b"n1": marks}
    assert statusonly.match(line, known) == (b"MODIFIED", b"101")

    def variant(f: Any) -> bytes:
        v = copy.deepcopy(o)
        f(v)
        return json.dumps({"type": "MODIFIED", "object": v}).encode()

    # a second "spec" key (a label) makes the one occurrence ambiguous
    assert (
        statusonly.match(variant(lambda v: v["metadata"]["labels"].update(spec="x")), known) is None
    )
    # name not first in metadata: the head pattern does not vouch for it
    moved = variant(lambda v: v.update(metadata={"uid": "u", **v["metadata"]}))
    assert statusonly.match(moved, known) is None
    # a letter written as an escape anywhere
    assert statusonly.match(line.replace(b'"spec"', b'"\\u0073pec"'), known) is None
    # the same bytes without the key being there any more
    assert statusonly.match(variant(lambda v: v.pop("spec")), known) is None
    # unknown node, other event types
    assert statusonly.match(line, {}) is None
    assert statusonly.match(line.replace(b'"MODIFIED"', b'"DELETED"'), known) is None
    # marks refuse objects whose key is not unique or whose value is not an object/array
    o2 = node("n2", 2)
    o2["metadata"]["labels"]["addresses"] = "x"
    assert statusonly.marks(json.dumps(o2), o2) is None
    o2 = node("n2", 2)
    o2["spec"] = None
    assert statusonly.marks(json.dumps(o2), o2) is None


def test_listed_nodes_let_the_next_heartbeat_take_the_short_path() -> None:
    objs = [node(n, i + 1) for i, n in enumerate(NAMES)]
    listed = {"kind": "NodeList", "metadata": {"resourceVersion": "7"}, "items": objs}
    text = json.dumps(listed, ensure_ascii=False)  # UTF-8, as API servers write it
    items, _ = split_list(text.encode())
    cache = NodeCache(self_name=SELF)
    cache.replace(items)
    for o in objs:
        heartbeat(o, 99, random.Random(0))
        line = json.dumps({"type": "MODIFIED", "object": o}, ensure_ascii=False).encode()
        got = cache.quick(line)
        if o["metadata"]["name"] == SELF:
            assert got is None  # this node's object is always decoded (its conditions)
        else:
            assert got == o["metadata"]["resourceVersion"]
    assert cache.ignored["MODIFIED"] == len(objs) - 1
    # a cache that tracks a condition decodes every event
    cond = NodeCache(condition="NetworkUnavailable")
    cond.replace(split_list(text.encode())[0])
    assert cond.quick(json.dumps({"type": "MODIFIED", "object": objs[0]}).encode()) is None
