"""Status-only watch events recognized from their bytes, without decoding them.

Why: in a big cluster nearly every Node event is a kubelet heartbeat (conditions, timestamps,
resourceVersion) that changes nothing routing reads. Decoding ~3 KB of JSON into dicts for each
costs more than everything else the agent does per event, so such an event is recognized from
its raw line and skips the decoding; anything not recognized is decoded in full, which is
always right. Being conservative is cheap: a false "decode it" costs a few microseconds, a
false "status-only" would be a wrong route, so every rule below only ever says "decode it"
when in doubt.

How. When a Node is decoded in full (a listed item or an event), `marks` also records the
exact bytes of the two values routing reads (see `nosdn.sources.nodes.fingerprint`): the whole
``spec`` object (``podCIDRs``, ``podCIDR``, ``providerID``) and the ``status.addresses`` array,
each checked against the decoded object. A later event of that node is status-only when:

1. it starts like ``{"type":"MODIFIED"|"ADDED","object":{["kind"|"apiVersion": a string,]
   "metadata":{"name":"NAME"[, plain uid/namespace/... strings][, "resourceVersion":"RV"]``
   (whitespace allowed where JSON allows it): an anchored pattern of escape-free strings, so
   this *is* the event type and the object's own name, nothing nested can pose as them. That is
   how API servers write watch events (Go writes struct fields in order: name, uid,
   resourceVersion first) and how the emulator does;
2. no ASCII letter in the line is written as a ``\\u00XX`` escape, so each key routing reads,
   wherever it is, appears literally (``"spec"``, ``"addresses"``);
3. ``"spec"`` and ``"addresses"`` each occur exactly as often as in the recorded object
   (once, or not at all), and the recorded bytes, from the key through the end of its value
   (``"spec": {...}``), occur in the line: an object or array is self-delimiting, so the one
   occurrence of the key carries an equal value (any whitespace change inside it, or a
   reordered key, just means "decode it");
4. a resourceVersion the pattern did not catch does not appear at all.

Why one occurrence is the field itself: a key that is present is written literally (rule 2),
so when exactly one literal occurrence exists and the field is present, it is that one. The
field could only be *absent* while an occurrence elsewhere carries the very same object or
array if the Node held a second ``spec`` object or ``addresses`` array under another path: the
Node schema has none (labels and annotations hold strings, managedFields keys are prefixed
``f:``/``k:``/``v:``, and a quote inside a string is escaped, so ``\\"spec\\"`` is no match).
What this does not defend against is a line that is not valid JSON or has duplicate keys: no
API server sends those. `tests/test_statusonly.py` holds the short path against a full decode
of thousands of mutated, oddly written events.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

#: What is recorded per node: the bytes of ``"spec": {...}`` and ``"addresses": [...]``, key
#: included (None: the object had no such key).
Marks = tuple[bytes | None, bytes | None]

_W = rb"[ \t\r]*"  # JSON whitespace (a line has no newline)
_S = rb'"[^"\\]*"'  # a string with no escapes
_HEAD = re.compile(
    rb"\{" + _W + rb'"type"' + _W + rb":" + _W + rb'"(MODIFIED|ADDED)"' + _W + rb"," + _W
    + rb'"object"' + _W + rb":" + _W + rb"\{"
    + rb"(?:" + _W + rb'"(?:kind|apiVersion)"' + _W + rb":" + _W + _S + _W + rb",)*"
    + _W + rb'"metadata"' + _W + rb":" + _W + rb"\{" + _W
    + rb'"name"' + _W + rb":" + _W + rb'"([^"\\]+)"'
    + rb"(?:" + _W + rb"," + _W + rb'"(?:generateName|namespace|selfLink|uid)"' + _W + rb":"
    + _W + _S + rb")*"
    + rb"(?:" + _W + rb"," + _W + rb'"resourceVersion"' + _W + rb":" + _W + rb'"([^"\\]*)")?'
)  # fmt: skip
_LETTER_ESCAPE = re.compile(rb"\\u00[4-7]")
_LETTER_ESCAPE_STR = re.compile(r"\\u00[4-7]")
_SPEC = b'"spec"'
_ADDRESSES = b'"addresses"'
_RV = b'"resourceVersion"'
_DECODER = json.JSONDecoder()


def raw_of(obj: Mapping[str, Any]) -> bytes | str | None:
    """The JSON text ``obj`` was decoded from, when its decoder kept it (`RawObject`)."""
    return getattr(obj, "raw", None)


class RawObject(dict[str, Any]):
    """A decoded object that remembers the JSON text it came from (``raw``)."""

    __slots__ = ("raw",)

    def __init__(self, obj: Mapping[str, Any], raw: bytes | str) -> None:
        super().__init__(obj)
        self.raw = raw


def match(line: bytes, known: Mapping[bytes, Marks]) -> tuple[bytes, bytes | None] | None:
    """(event type, resourceVersion or None) when ``line`` is a status-only event of a node
    in ``known`` (name -> its `marks`); None: decode it.

    Written for the cost of a status-only event, which runs with cold caches (one event per
    wake-up): one pattern and a handful of bytes scans, each a single C call."""
    m = _HEAD.match(line)
    if m is None:
        return None
    etype, name, version = m.groups()
    marks = known.get(name)
    if marks is None:
        return None
    if b"\\" in line and _LETTER_ESCAPE.search(line) is not None:
        return None
    if version is None and _RV in line:
        return None
    spec, addresses = marks
    if spec is None:
        if _SPEC in line:
            return None
    elif spec not in line or line.count(_SPEC) != 1:
        return None
    if addresses is None:
        if _ADDRESSES in line:
            return None
    elif addresses not in line or line.count(_ADDRESSES) != 1:
        return None
    return etype, version


def _value(text: str, key: str, present: bool, want: Any) -> tuple[bool, bytes | None]:
    """(usable, bytes from the key to the end of its value) of the one ``"key"`` in ``text``."""
    quoted = f'"{key}"'
    i = text.find(quoted)
    if not present:
        return i < 0, None
    if i < 0 or text.find(quoted, i + 1) >= 0 or not isinstance(want, dict | list):
        return False, None
    j = i + len(quoted)
    while j < len(text) and text[j] in " \t\r":
        j += 1
    if j >= len(text) or text[j] != ":":
        return False, None
    j += 1
    while j < len(text) and text[j] in " \t\r":
        j += 1
    try:
        value, end = _DECODER.raw_decode(text, j)
    except ValueError:
        return False, None
    if value != want or type(value) is not type(want):
        return False, None
    return True, text[i:end].encode()


def marks(raw: bytes | str, obj: Mapping[str, Any]) -> Marks | None:
    """What a later event of this node must carry to be status-only; None when ``raw`` (the
    JSON ``obj`` was decoded from: an event line or a listed item) does not allow it."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    if "\\" in text and _LETTER_ESCAPE_STR.search(text) is not None:
        return None
    ok, spec = _value(text, "spec", "spec" in obj, obj.get("spec"))
    if not ok:
        return None
    status = obj.get("status")
    if status is not None and not isinstance(status, dict):
        return None
    present = status is not None and "addresses" in status
    ok, addresses = _value(text, "addresses", present, (status or {}).get("addresses"))
    if not ok:
        return None
    return spec, addresses
