"""Values from untrusted input, as a message may show them.

A bad value is echoed so a person can find it, but it came from a file or a Node object that
anyone could have written: it may be megabytes long, hold a newline that forges another
message line, or terminal escapes. `echo` keeps plain short values as written (``10.0.0.1``)
and shows anything else quoted and escaped (``repr``), cut to a length a line can hold.
"""

from __future__ import annotations

#: Characters of a value shown before it is cut.
LIMIT = 80


def echo(value: object, limit: int = LIMIT) -> str:
    """``value`` for a message: as is if short and plainly printable, else ``repr`` of its
    start followed by how long it was."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        return f"{text[:limit]!r}…({len(text)} chars)"
    if text and text.isprintable() and " " not in text and "'" not in text and '"' not in text:
        return text
    return repr(text) if isinstance(value, str) else text


def cut(text: str, limit: int) -> str:
    """``text`` itself if at most ``limit`` characters, else its start and its length."""
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


def quoted(text: str, limit: int = LIMIT) -> str:
    """``repr(text)`` always quoted, cut like `echo` when longer than ``limit``."""
    return repr(text) if len(text) <= limit else echo(text, limit)
