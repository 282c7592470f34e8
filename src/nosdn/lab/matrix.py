"""The ping matrix of `lab check` as a picture (``lab check --out FILE``): one grid per IP
family, a row per source, a column per pod, green where the ping was answered and red where
it was not, so a broken route shows up as a red cross-shaped pattern at a glance.

The grid is a Graphviz HTML-like table drawn by Graphviz's ``dot`` (`nosdn.render.graph`), the
same tool ``nosdn graph`` uses, so the lab needs nothing else to draw it.
"""

from __future__ import annotations

import html
from pathlib import Path

from nosdn.lab.lifecycle import CheckResult
from nosdn.render.graph import render_dot

OK, FAIL, NONE = "#66bb6a", "#e53935", "#eeeeee"


def _h(text: object) -> str:
    return html.escape(str(text), quote=True)


def _grid(result: CheckResult, family: int) -> str:
    cells = {
        (r.probe.src.label, r.probe.dst.label): r
        for r in result.results
        if r.probe.family == family
    }
    failed = sum(1 for r in cells.values() if not r.ok)
    head = "".join(
        f'<TD BGCOLOR="#eceff1"><FONT POINT-SIZE="10">{_h(t.label)}</FONT></TD>'
        for t in result.targets
    )
    verdict = f"{failed} of {len(cells)} failed" if failed else f"all {len(cells)} answered"
    rows = [
        f'<TR><TD COLSPAN="{len(result.targets) + 1}" BGCOLOR="white"><B>IPv{family}: ping from '
        f"row to column — {verdict}</B></TD></TR>",
        f'<TR><TD BGCOLOR="#eceff1"><I>from \\\\ to</I></TD>{head}</TR>',
    ]
    for src in result.sources:
        row = [f'<TD ALIGN="LEFT" BGCOLOR="#eceff1">{_h(src.label)}</TD>']
        for dst in result.targets:
            r = cells.get((src.label, dst.label))
            if r is None:
                row.append(f'<TD BGCOLOR="{NONE}"> </TD>')
            else:
                mark, colour = ("✓", OK) if r.ok else ("✗", FAIL)
                row.append(f'<TD BGCOLOR="{colour}"><FONT COLOR="white"><B>{mark}</B></FONT></TD>')
        rows.append(f"<TR>{''.join(row)}</TR>")
    return (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="5">'
        + "".join(rows)
        + "</TABLE>>"
    )


def matrix_dot(result: CheckResult) -> str:
    out = [
        "digraph ping_matrix {",
        f'  label="lab {_h(result.lab)}: nosdn lab check"; labelloc=t; fontname="Helvetica";',
        '  node [shape=plain fontname="Helvetica" fontsize=11]; rankdir=TB;',
    ]
    out += [f"  ipv{f} [label={_grid(result, f)}];" for f in result.families]
    if len(result.families) > 1:  # one grid above the other, IPv4 first
        out.append("  ipv4 -> ipv6 [style=invis];")
    out.append("}")
    return "\n".join(out) + "\n"


def write_matrix(result: CheckResult, path: Path) -> None:
    """Draw the matrix into ``path`` (PNG, or SVG when the name ends in .svg)."""
    fmt = "svg" if path.suffix.lower() == ".svg" else "png"
    path.write_bytes(render_dot(matrix_dot(result), fmt))
