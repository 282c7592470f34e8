"""Cut a big inventory's node list into pieces that parse on their own.

Why: yaml-rs parses a document in one go, holding its own tree of it and then the Python
objects built from that tree: for a big inventory that peak is more than everything else
``nosdn apply`` needs (figures: bench/README.md, "Figures behind the code"). Parsed a
thousand items at a time, each piece turned into nodes before the next is read, the peak is one
piece's worth (and parsing is faster).

Only a block sequence under a top-level ``nodes:`` key is cut, and only when nothing in the file
can make one item's text depend on another's: anchors and aliases, tags, block scalars,
directives, document markers and tabs anywhere, or a line with an odd number of quotes (a
quoted scalar that goes on to the next line), send the file to the whole-document parser. The
caller must also check that each piece parses to a list of exactly as many items as it has
lines that start an item (`Split.pieces` gives that count), and fall back to the whole document
on any mismatch or error, so that error messages always come from the whole document.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

#: Characters that may tie one part of a document to another (``&`` anchor, ``*`` alias,
#: ``!`` tag, ``|``/``>`` block scalar, ``%`` directive) or that YAML treats specially (tab).
_UNSAFE_CHARS = "&*!|>%\t"
_NODES = re.compile(r"^nodes:(?:[ ]+#.*)?[ ]*$", re.M)
_FIRST_ITEM = re.compile(r"^( *)-(?: |$)", re.M)
#: The first line after the node list: at column 0, neither a comment nor (when the items
#: themselves are at column 0) an item. (Patterns start with a newline, not ``^``: a literal
#: start lets the regex engine skip ahead, several times faster on a long list.)
_END_INDENTED = re.compile(r"\n[^ #\n]")
_END_AT_0 = re.compile(r"\n(?!-(?: |\n|$)|#)[^ \n]")


@dataclass(frozen=True, slots=True)
class Split:
    """A document cut into the rest (``nodes:`` left without a value) and the node items."""

    head: str
    text: str
    #: where each item starts in ``text``, and where the node list ends
    starts: list[int]
    end: int

    def pieces(self, size: int) -> Iterator[tuple[str, int]]:
        """Each piece of at most ``size`` items, and how many items it holds."""
        starts = self.starts
        for a in range(0, len(starts), size):
            b = min(a + size, len(starts))
            stop = starts[b] if b < len(starts) else self.end
            yield self.text[starts[a] : stop], b - a


def split_nodes(text: str) -> Split | None:
    """The node items of ``text`` as separately parseable pieces, or None when the document
    cannot be cut safely (see the module docstring)."""
    if any(c in text for c in _UNSAFE_CHARS) or _marker(text):
        return None
    key = _NODES.search(text)
    if key is None:
        return None
    body = key.end() + 1  # the line after ``nodes:``
    first = _FIRST_ITEM.search(text, body)
    if first is None:
        return None
    gap = text[body : first.start()]
    if any(ln.strip() and not ln.lstrip().startswith("#") for ln in gap.split("\n")):
        return None  # something else stands between ``nodes:`` and its first item
    pad = first.group(1)
    after = (_END_INDENTED if pad else _END_AT_0).search(text, first.start())
    end = after.start() + 1 if after is not None else len(text)
    block = text[first.start() : end]
    # every line of the block is blank, a comment, an item, or indented deeper than items
    stray = re.compile(rf"\n(?!{pad}-(?: |\n|$)|{pad} |[ ]*(?:\n|#|$))")
    if stray.search(block):
        return None
    if ('"' in block or "'" in block) and any(
        ln.count('"') % 2 or ln.count("'") % 2 for ln in block.split("\n")
    ):
        return None
    base = first.start()
    item = re.compile(rf"\n{pad}-(?= |\n|$)")
    starts = [base, *(base + m.start() + 1 for m in item.finditer(block))]
    head = text[: key.end()] + "\n" + text[end:]
    return Split(head, text, starts, end)


def _marker(text: str) -> bool:
    """A document start or end marker (``---``, ``...``) at the start of a line."""
    return text.startswith(("---", "...")) or "\n---" in text or "\n..." in text
