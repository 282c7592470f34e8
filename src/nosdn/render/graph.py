"""`nosdn graph`: the cluster as people draw it on a whiteboard — L2 segments with their nodes,
each node's addresses and pod subnets, the router joining the segments, and which routes go
where: the host routes every node of a segment carries (``nosdn apply``), the router's table
(``nosdn render --format bird|frr|...``) and the service routes of external hosts.

The picture is computed once (`picture`, pure: cluster + the segments and router the
inventory does not know about) and written as Graphviz ``dot`` or Mermaid text by pure
functions; SVG and PNG come from Graphviz's own ``dot`` program (`render_dot`), never drawn by
hand. Routes are shown as tables inside the boxes rather than as one arrow per route: a
segment of N nodes has N² host routes, but every node of it carries the same N, so one table
per segment says it all and the picture stays readable at a few dozen nodes.

At a hundred nodes a box per node is a comb of a hundred edges nobody can read, so a segment of
more than `SUMMARY_AT` nodes is drawn as one box listing its nodes in inventory order (cut like
a route table), with one edge. What is wrong is marked, so it survives the summary: a node
without a pod subnet, a subnet allocated only in memory (``nosdn allocate --write`` pins it),
a router route whose next hop is on none of the router's segments (it cannot reach it).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from nosdn.model import EXTERNAL, ROUTER, Cluster, IPAddress, IPNetwork, Node, Route
from nosdn.plan import desired_routes
from nosdn.render._quote import comment, dot_html, dot_str

#: More rows than this in one table are summarised ("... and 12 more").
MAX_ROWS = 24
#: Nodes per row inside one segment box.
ROW = 8
#: A segment with more nodes than this is drawn as one summary box.
SUMMARY_AT = 16
FORMATS = ("svg", "png", "dot", "mermaid")


class GraphError(ValueError):
    """The picture cannot be made as asked (bad option, or Graphviz missing or failing)."""


@dataclass(frozen=True, slots=True)
class SegmentView:
    """One L2 segment: its network (None when the user gave none: one segment for all), the
    nodes on it, and the host routes each of them carries for the others."""

    index: int
    net: IPNetwork | None
    nodes: tuple[Node, ...]
    host_routes: tuple[Route, ...]
    gateway: tuple[IPAddress, ...] = ()  # the router's addresses on it

    @property
    def label(self) -> str:
        if self.net is None:
            return "L2 segment (every node on-link)"
        return f"L2 segment {self.net}"


@dataclass(frozen=True, slots=True)
class RouterView:
    name: str
    ips: tuple[IPAddress, ...]
    routes: tuple[Route, ...]
    segments: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Picture:
    cluster: Cluster
    segments: tuple[SegmentView, ...]
    router: RouterView | None = None
    #: nodes on none of the given segments: off-link for everyone's host routes
    elsewhere: tuple[Node, ...] = ()
    services: tuple[Route, ...] = ()
    notes: tuple[str, ...] = field(default=())
    #: nodes whose pod subnets were allocated in memory for this picture only
    unpinned: frozenset[str] = frozenset()
    #: router routes whose next hop is on none of the router's segments
    unreachable: frozenset[IPNetwork] = frozenset()

    def node_marks(self, n: Node) -> list[str]:
        """What is wrong with a node, as the picture says it."""
        if not n.pod_cidrs:
            return ["no pod subnet"]
        if n.name in self.unpinned:
            return ["subnet only in memory (allocate --write)"]
        return []


def picture(
    cluster: Cluster,
    segments: Sequence[IPNetwork] = (),
    router: Sequence[IPAddress] = (),
    router_name: str = "router",
    unpinned: frozenset[str] = frozenset(),
) -> Picture:
    """What to draw. ``segments``: the L2 networks the nodes sit on (none: all on one);
    ``router``: the router's addresses (it joins every segment it has an address in);
    ``unpinned``: nodes whose subnets were allocated in memory."""
    wanted = desired_routes(cluster, ROUTER)
    notes: list[str] = []
    views: list[SegmentView] = []
    placed: set[str] = set()
    nets: list[IPNetwork | None] = list(segments) or [None]
    for i, net in enumerate(nets, 1):
        if net is None:
            members = cluster.nodes
        else:
            members = tuple(n for n in cluster.nodes if any(ip in net for ip in n.ips))
        names = {n.name for n in members} - placed
        members = tuple(n for n in members if n.name in names)
        placed |= names
        gw = tuple(ip for ip in router if net is None or ip in net)
        routes = tuple(r for r in wanted if r.node in names)
        views.append(SegmentView(i, net, members, routes, gw))
    elsewhere = tuple(n for n in cluster.nodes if n.name not in placed)
    rv = None
    unreachable: set[IPNetwork] = set()
    if router:
        attached = tuple(v.index for v in views if v.gateway)
        rv = RouterView(router_name, tuple(router), tuple(wanted), attached)
        reach = [v.net for v in views if v.gateway]
        for r in wanted:
            if not any(net is None or via in net for via in r.via for net in reach):
                unreachable.add(r.dst)
        if unreachable:
            notes.append(
                f"{len(unreachable)} router route(s) via an address on none of the router's "
                "segments: it cannot reach them"
            )
    if unpinned:
        notes.append(
            f"{len(unpinned)} node(s) with pod subnets allocated in memory only: "
            "nosdn allocate -f INVENTORY --write pins them"
        )
    if len(views) > 1 and (rv is None or len(rv.segments) < len(views)):
        notes.append(
            "no router joins every segment: pods on different segments cannot reach each other"
        )
    if elsewhere:
        who = ", ".join(n.name for n in elsewhere)
        notes.append(f"{who}: on none of the segments, off-link for every host route")
    services = tuple(r for r in desired_routes(cluster, EXTERNAL) if r.node is None)
    return Picture(
        cluster,
        tuple(views),
        rv,
        elsewhere,
        services,
        tuple(notes),
        frozenset(unpinned),
        frozenset(unreachable),
    )


def _route_rows(
    routes: Sequence[Route], unreachable: frozenset[IPNetwork] = frozenset()
) -> list[str]:
    rows = [
        ("✗ " if r.dst in unreachable else "")
        + f"{r.dst} → {', '.join(map(str, r.via))} ({r.node or 'services'})"
        + (": unreachable from the router" if r.dst in unreachable else "")
        for r in routes
    ]
    if len(rows) > MAX_ROWS:
        rows = [*rows[: MAX_ROWS - 1], f"... and {len(rows) - MAX_ROWS + 1} more"]
    return rows


# --- Graphviz dot ------------------------------------------------------------------------------
def _id(text: str) -> str:
    """A DOT identifier made of ``text`` (callers give it a letter prefix): every other
    character becomes ``_``."""
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


def _h(text: object) -> str:
    """`dot_html`, never empty: Graphviz refuses an empty ``<B></B>``."""
    return dot_html(text) or " "


def _table(title: str, rows: Sequence[str], colour: str, title_colour: str) -> str:
    cells = "".join(f'<TR><TD ALIGN="LEFT">{_h(r)}</TD></TR>' for r in rows) or (
        '<TR><TD ALIGN="LEFT"><I>none</I></TD></TR>'
    )
    return (
        f'<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4" BGCOLOR="{colour}">'
        f'<TR><TD BGCOLOR="{title_colour}"><B>{_h(title)}</B></TD></TR>{cells}</TABLE>>'
    )


def _summary_rows(pic: Picture, nodes: Sequence[Node]) -> list[str]:
    """One line per node, in order, for a segment drawn as one box; what is wrong is repeated
    at the end, so a cut list still says it."""
    rows = [
        f"{n.name}  {', '.join(map(str, n.ips))}  "
        + (", ".join(f"pods {c}" for c in n.pod_cidrs) or "no pod subnet")
        + "".join(f"  ✗ {m}" for m in pic.node_marks(n) if n.pod_cidrs)
        for n in nodes
    ]
    if len(rows) > MAX_ROWS:
        rows = [*rows[: MAX_ROWS - 1], f"... and {len(rows) - MAX_ROWS + 1} more"]
    for mark in dict.fromkeys(m for n in nodes for m in pic.node_marks(n)):
        who = [n.name for n in nodes if mark in pic.node_marks(n)]
        shown = ", ".join(who[:5]) + (f" and {len(who) - 5} more" if len(who) > 5 else "")
        rows.append(f"✗ {mark}: {shown}")
    return rows


def _node_label(n: Node, marks: Sequence[str] = ()) -> str:
    rows = "".join(f"<TR><TD>{_h(ip)}</TD></TR>" for ip in n.ips)
    pods = "".join(f'<TR><TD BGCOLOR="#e8f5e9">pods {_h(c)}</TD></TR>' for c in n.pod_cidrs)
    if not n.pod_cidrs:
        pods = '<TR><TD BGCOLOR="#ffebee"><I>no pod subnet</I></TD></TR>'
    pods += "".join(
        f'<TR><TD BGCOLOR="#fff8e1"><I>{_h(m)}</I></TD></TR>' for m in marks if n.pod_cidrs
    )
    return (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="4" BGCOLOR="white">'
        f'<TR><TD BGCOLOR="#bbdefb"><B>{_h(n.name)}</B></TD></TR>{rows}{pods}</TABLE>>'
    )


def to_dot(pic: Picture) -> str:
    """The picture as a Graphviz digraph (render it with ``dot -Tsvg``)."""
    c = pic.cluster
    out = [
        f"digraph {_id('nosdn_' + c.name)} {{",
        f"  label={dot_str(c.name + ': pod networking with plain routes (nosdn)')}; labelloc=t;",
        '  fontname="Helvetica"; rankdir=TB; newrank=true; compound=true;',
        '  node [fontname="Helvetica" fontsize=11 shape=plain];',
        '  edge [fontname="Helvetica" fontsize=10 arrowhead=none color="#607d8b"];',
    ]
    for seg in pic.segments:
        sw = f"switch{seg.index}"
        out += [
            f"  subgraph cluster_{seg.index} {{",
            f'    label={dot_str(seg.label)}; style="rounded,filled"; fillcolor="#f5f7fa";'
            ' color="#90a4ae";',
            f'    {sw} [shape=box style="rounded,filled" fillcolor="#cfd8dc" '
            f'label="switch {seg.index}"];',
        ]
        if len(seg.nodes) > SUMMARY_AT:  # an overview: one box, not a comb of edges
            title = f"{len(seg.nodes)} nodes (in inventory order)"
            box = _table(title, _summary_rows(pic, seg.nodes), "white", "#bbdefb")
            out.append(f"    nodes{seg.index} [label={box}];")
            out.append(f"    {sw} -> nodes{seg.index};")
        for i, n in enumerate(seg.nodes if len(seg.nodes) <= SUMMARY_AT else ()):
            out.append(f"    {_id('n_' + n.name)} [label={_node_label(n, pic.node_marks(n))}];")
            out.append(f"    {sw} -> {_id('n_' + n.name)};")
            if i >= ROW:  # wrap long segments into rows instead of one very wide line
                above = _id("n_" + seg.nodes[i - ROW].name)
                out.append(f"    {above} -> {_id('n_' + n.name)} [style=invis];")
        rows = _route_rows(seg.host_routes)
        if seg.gateway:
            rows.append(f"default → {', '.join(map(str, seg.gateway))} (router: the rest)")
        title = "host routes (nosdn apply): every node here has the others'"
        out.append(
            f"    {_id(f'routes{seg.index}')} [label={_table(title, rows, 'white', '#fff3e0')}];"
        )
        out.append(f"    {sw} -> {_id(f'routes{seg.index}')} [style=dotted];")
        out.append("  }")
    if pic.elsewhere:
        out += [
            "  subgraph cluster_elsewhere {",
            '    label="on no given segment (off-link)"; style="rounded,dashed"; color="#e53935";',
        ]
        out += [f"    {_id('n_' + n.name)} [label={_node_label(n)}];" for n in pic.elsewhere]
        out.append("  }")
    if pic.router is not None:
        r = pic.router
        rows = _route_rows(r.routes, pic.unreachable)
        title = f"{r.name} {' / '.join(map(str, r.ips))}: static routes (nosdn render)"
        out.append(f"  router [label={_table(title, rows, 'white', '#e1bee7')}];")
        for i in r.segments:
            out.append(f'  router -> switch{i} [color="#8e24aa" penwidth=2];')
    if pic.services:
        rows = _route_rows(pic.services)
        title = "external hosts also route services (nosdn apply --external)"
        out.append(f"  services [label={_table(title, rows, 'white', '#e0f7fa')}];")
    for i, note in enumerate(pic.notes):
        out.append(
            f'  note{i} [shape=note style=filled fillcolor="#ffebee" color="#e53935" '
            f"label={dot_str(note)}];"
        )
    out.append("}")
    return "\n".join(out) + "\n"


# --- Mermaid -----------------------------------------------------------------------------------
def _m(text: object) -> str:
    """Text safe inside a quoted Mermaid label: one line, no quote, no tag."""
    return comment(str(text)).replace('"', "'").replace("<", "&lt;").replace(">", "&gt;")


def to_mermaid(pic: Picture) -> str:
    """The picture as a Mermaid flowchart (GitHub and most wikis render it)."""
    out = ["flowchart TB"]
    for seg in pic.segments:
        out.append(f'  subgraph seg{seg.index}["{_m(seg.label)}"]')
        out.append(f'    switch{seg.index}(["switch {seg.index}"])')
        if len(seg.nodes) > SUMMARY_AT:
            rows = [f"<b>{len(seg.nodes)} nodes</b>", *map(_m, _summary_rows(pic, seg.nodes))]
            out.append(f'    nodes{seg.index}["{"<br/>".join(rows)}"]')
            out.append(f"    switch{seg.index} --- nodes{seg.index}")
        for n in seg.nodes if len(seg.nodes) <= SUMMARY_AT else ():
            lines = [f"<b>{_m(n.name)}</b>", *map(_m, n.ips)]
            lines += [f"pods {_m(c)}" for c in n.pod_cidrs] or ["no pod subnet"]
            lines += [f"✗ {_m(m)}" for m in pic.node_marks(n) if n.pod_cidrs]
            out.append(f'    {_id("n_" + n.name)}["{"<br/>".join(lines)}"]')
            out.append(f"    switch{seg.index} --- {_id('n_' + n.name)}")
        rows = [_m(r) for r in _route_rows(seg.host_routes)]
        if seg.gateway:
            rows.append(f"default → {_m(', '.join(map(str, seg.gateway)))} (router)")
        title = "<b>host routes on every node here</b>"
        out.append(f'    routes{seg.index}["{"<br/>".join([title, *rows])}"]')
        out.append(f"    switch{seg.index} -.- routes{seg.index}")
        out.append("  end")
    if pic.elsewhere:
        out.append('  subgraph elsewhere["on no given segment (off-link)"]')
        out += [f'    {_id("n_" + n.name)}["{_m(n.name)}"]' for n in pic.elsewhere]
        out.append("  end")
    if pic.router is not None:
        r = pic.router
        rows = [_m(x) for x in _route_rows(r.routes, pic.unreachable)]
        title = f"<b>{_m(r.name)}</b> {_m(' / '.join(map(str, r.ips)))}"
        out.append(f'  router{{{{"{"<br/>".join([title, *rows])}"}}}}')
        out += [f"  router === switch{i}" for i in r.segments]
    if pic.services:
        rows = [_m(x) for x in _route_rows(pic.services)]
        out.append(f'  services["{"<br/>".join(["<b>services (external hosts)</b>", *rows])}"]')
    for i, note in enumerate(pic.notes):
        out.append(f'  note{i}>"{_m(note)}"]')
    return "\n".join(out) + "\n"


# --- Graphviz ----------------------------------------------------------------------------------
def render_dot(dot: str, fmt: str = "svg", timeout: float = 60) -> bytes:
    """Lay out and draw ``dot`` text with Graphviz's ``dot`` program (svg, png, pdf...)."""
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError(
            "Graphviz's dot is not installed — apt-get install graphviz "
            "(or use --format dot or mermaid and draw it elsewhere)"
        )
    try:
        proc = subprocess.run(
            [exe, f"-T{fmt}"], input=dot.encode(), capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise GraphError(f"dot did not finish within {timeout:g} s") from None
    if proc.returncode != 0:
        raise GraphError(f"dot -T{fmt} failed: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout


def render_graph(pic: Picture, fmt: str) -> bytes:
    """The picture in ``fmt``: svg or png (through Graphviz), dot or mermaid (text)."""
    if fmt == "dot":
        return to_dot(pic).encode()
    if fmt == "mermaid":
        return to_mermaid(pic).encode()
    if fmt in ("svg", "png"):
        return render_dot(to_dot(pic), fmt)
    raise GraphError(f"--format {fmt}: choose one of {', '.join(FORMATS)}")
