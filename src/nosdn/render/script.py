"""The post's method as one POSIX shell script for the whole cluster: a hash table of nodes and
routes, and a loop that installs them.

One script serves every node (and any external host), so it can be baked into one image or one
cloud-init file: at run time it finds which node it is from its own addresses. The data is the
cluster-wide route list from `nosdn.plan.desired_routes` (the external target: every pod subnet
plus the service routes), tagged with the node each subnet lives on; the script keeps the rows a
node needs with the same rule the planner uses (not its own node, not service routes, only the
families it has an address in), which the tests check against the planner for every node.

Three things make it safe to run from a timer, as root, on machines people care about:
- it reads each table once and computes the whole diff in one ``awk`` (a no-op run costs a handful
  of processes, not one per route — the post's loop at 10,000 routes takes seconds);
- ownership is checked again with ``ip route show exact`` right before each write, because the
  kernel's ``replace`` ignores the protocol and would silently take over someone else's route;
  a prefix nobody routes is written with ``add`` (which fails rather than overwrite on a race);
- stale routes are deleted with ``proto N`` in the request, which the kernel matches: a delete can
  only ever remove a route that carries nosdn's protocol number.
It sticks to POSIX sh and awk (tested with dash and busybox) and iproute2's ``ip``.
"""

from __future__ import annotations

from nosdn.model import EXTERNAL, Cluster, Route, Target
from nosdn.plan import (
    ALWAYS_ALLOWED_REMOVALS,
    DEFAULT_MAX_DELETE_SHARE,
    UnknownNodeError,
    desired_routes,
)
from nosdn.render._base import (
    RenderedFile,
    RenderError,
    RenderOptions,
    check_protocol,
    check_table,
    generated_by,
)
from nosdn.render._quote import addr, check_cluster, comment, name, net, sh

SCRIPT_NAME = "nosdn-routes"

_HEADER = """\
#!/bin/sh
# @NAME@: pod routes for Kubernetes cluster "@CLUSTER@" as plain IP routes (no overlay).
# @GENERATED@
#   (nosdn render -f INVENTORY --format script@RENDER_ARGS@)
#
# What it does, on whichever machine runs it:
#   - finds which node this host is from its own addresses (ip -o addr), unless told;
#   - on a node: a route to every other node's pod subnets via that node's address
#     ("ip route add POD_SUBNET via NODE_IP"), never a route to its own pod subnets;
#   - on an external host (--external): every pod subnet, plus the service CIDRs via the
#     kube-proxy nodes (one ECMP route when there are several);
#   - every route it writes carries protocol @PROTO@ (`ip route` shows "proto @PROTO@", or the
#     name rt_protos gives it), in table @TABLE@; it changes or deletes only those routes, and
#     deletes the ones no longer wanted (a node that left, a subnet that moved);
#   - a wanted subnet that something else already routes (proto static, boot, bird, dhcp, ...)
#     is left alone and reported on stderr as a conflict;
#   - a node whose address is not on a directly connected network (off-link) is reported on
#     stderr and its routes are skipped, as `nosdn apply` does.
# Safe to run again and again (cron, a systemd timer): a run with nothing to do writes nothing.
#
# Run as root:  sh THIS_FILE [--external | --node NAME] [--dry-run]
#   --external   this host is not a cluster node               (or NOSDN_EXTERNAL=1)
#   --node NAME  skip the detection: this host is node NAME    (or NOSDN_NODE=NAME)
#   --dry-run    print the ip commands instead of running them (or NOSDN_DRY_RUN=1)
#   --force      remove routes even past the deletion guard     (or NOSDN_FORCE=1)
#   --max-delete-share S  the guard's share, in (0, 1]          (or NOSDN_MAX_DELETE_SHARE=S)
# The deletion guard (as `nosdn apply` and the agent have it): a run that would remove more
# than @SHARE@ of the routes nosdn owns on this host at once (and more than @ALWAYS@) changes
# nothing, prints those routes, and exits 1: the sign of a wrong node list or a host of
# another cluster with the same address, not of nodes leaving.
@DEFAULT_NOTE@
# Needs a POSIX sh (dash, bash, busybox ash), awk, and iproute2's ip (busybox's ip lacks proto).
# Exit status: 0 in sync (off-link nodes skipped); 1 conflicts or failed writes (everything
#              else was still applied), or the deletion guard refused (nothing changed);
#              2 bad arguments or this host could not be identified (nothing was changed).

set -u

PROTO=@PROTO@
TABLE=@TABLE@
MAX_DELETE_SHARE=${NOSDN_MAX_DELETE_SHARE:-@SHARE@}
ALWAYS_ALLOWED=@ALWAYS@
# What to do without --external/--node: detect, external, or node (then ONLY_NODE is set:
# this copy holds only that node's routes).
DEFAULT_MODE=@DEFAULT_MODE@
ONLY_NODE=@ONLY_NODE@

# The cluster's "hash table": each node's name and addresses (comma-separated).
nodes() {
    cat <<'EOF'
"""

_MIDDLE = """\
EOF
}

# The routes: destination, next hops (comma-separated; several = one ECMP route), and the node
# whose pod subnet it is ("-" for a service CIDR, which only external hosts get).
routes() {
    cat <<'EOF'
"""

_BODY = r"""EOF
}

say() { printf 'nosdn: %s\n' "$*"; }
warn() { printf 'nosdn: %s\n' "$*" >&2; }
die() { warn "$*"; exit 2; }
usage() {
    echo "usage: $0 [--external | --node NAME] [--dry-run] [--force] [--max-delete-share S]"
    echo "installs this cluster's pod routes (proto $PROTO, table $TABLE) on this host"
}
truthy() { case ${1:-} in 1 | y | yes | true | on) return 0 ;; *) return 1 ;; esac; }

mode=
node=${NOSDN_NODE:-}
dry=
force=
if truthy "${NOSDN_EXTERNAL:-}"; then mode=external; fi
if truthy "${NOSDN_DRY_RUN:-}"; then dry=1; fi
if truthy "${NOSDN_FORCE:-}"; then force=1; fi
while [ $# -gt 0 ]; do
    case $1 in
    --external) mode=external ;;
    --node)
        [ $# -ge 2 ] || die "--node needs a node name"
        node=$2
        shift
        ;;
    --node=*) node=${1#--node=} ;;
    -n | --dry-run) dry=1 ;;
    --force) force=1 ;;
    --max-delete-share)
        [ $# -ge 2 ] || die "--max-delete-share needs a share in (0, 1], e.g. 0.5"
        MAX_DELETE_SHARE=$2
        shift
        ;;
    --max-delete-share=*) MAX_DELETE_SHARE=${1#--max-delete-share=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    *)
        usage >&2
        die "unknown argument: $1"
        ;;
    esac
    shift
done
if [ -n "$node" ]; then
    [ "$mode" != external ] || die "--external and --node NAME exclude each other"
    mode=node
fi
if [ -z "$mode" ]; then
    mode=$DEFAULT_MODE
    node=$ONLY_NODE
fi
if [ -n "$ONLY_NODE" ] && [ "$node" != "$ONLY_NODE" ]; then
    die "this copy was rendered for node $ONLY_NODE only (it holds only that node's routes):" \
        "render the script without --node for other hosts"
fi
if [ "$mode" = node ] && ! nodes | awk -v n="$node" '$1 == n { f = 1 } END { exit !f }'; then
    die "node $node is not in this script's inventory"
fi

# Which nodes' addresses does this host have? ("name address" lines)
addrs=$(ip -o addr show) || die "cannot list this host's addresses (is iproute2's ip installed?)"
found=$({
    printf '%s\n' "$addrs" | awk 'NF >= 4 { sub(/\/.*/, "", $4); print "A", $4 }'
    nodes | sed 's/^/N /'
} | awk '
    $1 == "A" { have[$2] = 1; next }
    $1 == "N" {
        n = split($3, a, ",")
        for (i = 1; i <= n; i++) if (a[i] in have) { print $2, a[i]; break }
    }')
case $mode in
detect)
    [ -n "$found" ] || die "this host has none of the nodes' addresses:" \
        "run it with --external on a machine outside the cluster, or with --node NAME"
    if [ "$(printf '%s\n' "$found" | wc -l)" -ne 1 ]; then
        die "this host has addresses of several nodes ($(printf '%s\n' "$found" | tr '\n' ' '))" \
            "- say which one it is with --node NAME"
    fi
    node=${found%% *}
    mode=node
    ;;
external)
    [ -z "$found" ] || die "this host is node ${found%% *} (it has address" \
        "$(printf '%s\n' "$found" | awk '{ print $2; exit }')): --external is for machines" \
        "outside the cluster"
    ;;
node)
    other=$(printf '%s\n' "$found" | awk -v n="$node" 'NF && $1 != n { print $1, $2; exit }')
    [ -z "$other" ] || die "this host has the address of node ${other% *} (${other#* })," \
        "not of node $node: refusing to install node $node's routes here"
    [ -n "$found" ] || warn "none of node $node's addresses is on this host; going on as told"
    ;;
esac

# Our protocol may have a name in rt_protos (then `ip route` prints the name, not the number).
PROTOS="$PROTO $(cat /etc/iproute2/rt_protos /etc/iproute2/rt_protos.d/*.conf \
    /usr/share/iproute2/rt_protos /usr/share/iproute2/rt_protos.d/*.conf 2>/dev/null |
    awk -v p="$PROTO" '$1 == p { print $2 }' | tr '\n' ' ')"

# The routes this host wants: "DST VIA NODE" rows of the table above (not its own subnets, not
# the service routes on a node, only the families it has an address in).
wanted=$({
    nodes | sed 's/^/N /'
    routes | sed 's/^/W /'
} | awk -v me="$node" -v mode="$mode" '
    function fam(d) { return index(d, ":") ? 6 : 4 }
    $1 == "N" {
        if ($2 == me) { n = split($3, a, ","); for (i = 1; i <= n; i++) fams[fam(a[i])] = 1 }
        next
    }
    $1 == "W" && !(mode == "node" && ($4 == "-" || $4 == me || !(fam($2) in fams))) {
        print $2, $3, $4
    }') || die "awk failed"

# Is every next hop on a directly connected network? As `nosdn apply` does: one route lookup
# per next hop (all in one `ip -batch`); a lookup that finds a gateway, a local or special
# route, or no route at all makes the next hop off-link: reported, and its routes skipped (not
# a failure: nothing can be written that would work). Output: "GW NODE REASON" per off-link hop.
gws=$(printf '%s\n' "$wanted" | awk 'NF {
    n = split($2, a, ",")
    for (i = 1; i <= n; i++) if (!(a[i] in s)) { s[a[i]] = 1; print a[i], (n == 1 ? $3 : "-") }
}')
lookups=
if [ -n "$gws" ]; then
    lookups=$(printf '%s\n' "$gws" | awk '{ print "route get " $1 }' |
        ip -o -force -batch - 2>/dev/null)
fi
offlink=$({
    printf '%s\n' "$gws" | sed 's/^/G /'
    printf '%s\n' "$lookups" | sed 's/^/R /'
} | awk '
    $1 == "G" { ask[++n] = $2; who[$2] = $3; next }
    $1 == "R" && NF > 2 {
        if ($2 ~ /^(local|broadcast|multicast|anycast|unreachable|blackhole|prohibit|throw|nat)$/) {
            why[$3] = $2 == "local" ? "it is an address of this host" \
                : "the kernel has a " $2 " route for it"
            next
        }
        gw = ""
        for (j = 3; j < NF; j++) if ($j == "via") { gw = $(j + 1); break }
        if (gw == "") { on[$2] = 1; next }
        dev = ""
        for (j = 3; j < NF; j++) if ($j == "dev") { dev = " dev " $(j + 1); break }
        why[$2] = "not on a directly connected network; the kernel would route it via " gw dev
    }
    END {
        for (i = 1; i <= n; i++) {
            g = ask[i]
            if (g in on) continue
            print g, who[g], (g in why ? why[g] : "no route to it")
        }
    }')

# One read of each table; awk computes the whole diff. Output, one line per prefix:
#   ACTION DST WANTED-VIA NODE FOUND   (ACTION: keep add change remove conflict)
# rtshow IP-ARGS...: "ip IP-ARGS table $TABLE"; a table nothing was ever added to does not
# exist yet in the kernel, and counts as empty
rtshow() {
    if r_out=$(ip "$@" table "$TABLE" 2>&1); then
        [ -z "$r_out" ] || printf '%s\n' "$r_out"
    else
        case $r_out in *"does not exist"*) return 0 ;; esac
        warn "ip $* table $TABLE: $r_out"
        return 1
    fi
}
cur4=$(rtshow -4 -o route show) || die "cannot read routing table $TABLE"
cur6=$(rtshow -6 -o route show) || {
    warn "cannot read the IPv6 routing table $TABLE; treating it as empty"
    cur6=
}
actions=$({
    printf '%s\n' "$offlink" | sed 's/^/O /'
    printf '%s\n' "$wanted" | sed 's/^/W /'
    printf '%s\n' "$cur4" | sed 's/^/C4 /'
    printf '%s\n' "$cur6" | sed 's/^/C6 /'
} | awk -v protos="$PROTOS" '
    function norm(d, f) {
        if (d == "default") return f == 6 ? "::/0" : "0.0.0.0/0"
        if (index(d, "/") == 0) return d (f == 6 ? "/128" : "/32")
        return d
    }
    function same(a, b,    x, y, s, n, m, i) {
        n = split(a, x, ","); m = split(b, y, ",")
        if (n != m) return 0
        for (i = 1; i <= m; i++) s[y[i]] = 1
        for (i = 1; i <= n; i++) if (!(x[i] in s)) return 0
        return 1
    }
    # the next hops of VIA that are not off-link, comma-separated ("" when none is left)
    function onlink(v,    n, a, i, s) {
        n = split(v, a, ",")
        for (i = 1; i <= n; i++) if (!(a[i] in off)) s = s == "" ? a[i] : s "," a[i]
        return s
    }
    BEGIN { n = split(protos, p, " "); for (i = 1; i <= n; i++) ours[p[i]] = 1 }
    $1 == "O" { off[$2] = 1; next }
    $1 == "W" && NF >= 4 {
        v = onlink($3)
        if (v == "") next
        if (!($2 in want)) order[++nw] = $2
        want[$2] = v; who[$2] = $4
        next
    }
    $1 == "W" { next }
    NF >= 2 {
        f = $1 == "C6" ? 6 : 4; i = 2
        if ($2 ~ /^(unicast|local|broadcast|multicast|anycast)$/) i = 3
        if ($2 ~ /^(unreachable|blackhole|prohibit|throw|nat)$/) i = 3
        d = norm($i, f); proto = "boot"; gw = ""
        for (j = i + 1; j < NF; j++) {
            if ($j == "proto") proto = $(j + 1)
            else if ($j == "via") {
                g = $(j + 1)
                if ((g == "inet" || g == "inet6") && j + 1 < NF) g = $(j + 2)
                gw = gw == "" ? g : gw "," g
            }
        }
        if (!(proto in ours)) { if (!(d in foreign)) foreign[d] = proto }
        else if (!(d in owned)) { owned[d] = gw == "" ? "-" : gw; oorder[++no] = d }
    }
    END {
        for (i = 1; i <= nw; i++) {
            d = order[i]
            if (d in foreign) print "conflict", d, want[d], who[d], foreign[d]
            else if (!(d in owned)) print "add", d, want[d], who[d], "-"
            else if (same(owned[d], want[d])) print "keep", d, want[d], who[d], owned[d]
            else print "change", d, want[d], who[d], owned[d]
        }
        for (i = 1; i <= no; i++) {
            d = oorder[i]
            if (!(d in want)) print "remove", d, "-", "-", owned[d]
        }
    }') || die "awk failed"

# fam DST: -4 or -6
fam() { case $1 in *:*) echo -6 ;; *) echo -4 ;; esac; }

# show DST: the routes to exactly DST in our table, one per line
show() { rtshow "$(fam "$1")" -o route show exact "$1"; }

# foreign_owner ROUTES: the protocol of the first route in ROUTES that is not ours (or nothing)
foreign_owner() {
    printf '%s\n' "$1" | awk -v protos="$PROTOS" '
        BEGIN { n = split(protos, p, " "); for (i = 1; i <= n; i++) ours[p[i]] = 1 }
        NF { proto = "boot"; for (j = 1; j < NF; j++) if ($j == "proto") proto = $(j + 1)
             if (!(proto in ours)) { print proto; exit } }'
}

# write VERB DST VIA: "ip route VERB DST" with our protocol and table, via one next hop or several
write() {
    w_verb=$1 w_dst=$2 w_fam=$(fam "$2")
    old_ifs=$IFS
    IFS=,
    # shellcheck disable=SC2086 # split the next hops on commas, on purpose
    set -- $3
    IFS=$old_ifs
    if [ $# -eq 1 ]; then
        set -- via "$1"
    else
        n=$#
        while [ "$n" -gt 0 ]; do
            set -- "$@" nexthop via "$1"
            shift
            n=$((n - 1))
        done
    fi
    set -- ip "$w_fam" route "$w_verb" "$w_dst" proto "$PROTO" table "$TABLE" "$@"
    if [ -n "$dry" ]; then
        echo "$*"
    else
        "$@"
    fi
}

first() { awk 'NF { sub(/[ \t]+$/, ""); print; exit }'; }
pods() { if [ "$1" = - ]; then echo "services"; else echo "pods of $1"; fi; }

# The deletion guard, before the first write: the same rule as `nosdn apply` (nosdn.plan).
if [ -z "$dry" ] && [ -z "$force" ]; then
    verdict=$(printf '%s\n' "$actions" | awk -v share="$MAX_DELETE_SHARE" \
        -v always="$ALWAYS_ALLOWED" '
        $1 == "remove" { r++ }
        $1 == "remove" || $1 == "keep" || $1 == "change" { o++ }
        END {
            if (share !~ /^(0?\.[0-9]+|1(\.0*)?)$/ || share + 0 <= 0) { print "bad"; exit }
            if (r + 0 > share * o && r + 0 > always) print r + 0, o + 0; else print "ok"
        }')
    case $verdict in
    ok) ;;
    bad) die "--max-delete-share $MAX_DELETE_SHARE: use a share in (0, 1], e.g. 0.5" ;;
    *)
        # shellcheck disable=SC2086 # two numbers, split on purpose
        set -- $verdict
        printf '%s\n' "$actions" | awk '$1 == "remove" { print "- " $2 " via " $5 }' >&2
        warn "refusing to remove $1 of the $2 routes nosdn owns on this host at once (more" \
            "than $MAX_DELETE_SHARE of them): is this the right script, cluster and node?" \
            "Nothing was changed. If the routes above should go, run again with --force."
        exit 1
        ;;
    esac
fi

added=0 changed=0 removed=0 kept=0 conflicts=0 failed=0 skipped=0
conflict() { # DST VIA NODE OWNER LINE
    conflicts=$((conflicts + 1))
    warn "conflict: $1 ($(pods "$3")) is already routed by proto $4, not by nosdn:" \
        "\"$5\"; left alone (delete that route to let nosdn manage $1 via $2)"
}
# fail MESSAGE: one more failed write. Only the first SHOW_FAILED are told one by one (a table
# someone else rewrites, or a link that went down, fails every write: thousands of lines would
# bury the cause); the total and the likely cause come at the end.
SHOW_FAILED=10
why_exists=0 why_link=0 why_perm=0
fail() {
    failed=$((failed + 1))
    case $* in
    *"File exists"*) why_exists=$((why_exists + 1)) ;;
    *"unreachable"* | *"invalid gateway"* | *"No such device"* | *"is down"*)
        why_link=$((why_link + 1))
        ;;
    *"not permitted"*) why_perm=$((why_perm + 1)) ;;
    esac
    [ "$failed" -gt "$SHOW_FAILED" ] || warn "$*; the next run will try again"
}
while read -r gw who why; do
    [ -n "$gw" ] || continue
    skipped=$((skipped + 1))
    warn "off-link node $who ($gw): $why; its routes are skipped"
done <<EOF
$offlink
EOF
while read -r act dst via who had; do
    case $act in
    keep) kept=$((kept + 1)) ;;
    conflict) conflict "$dst" "$via" "$who" "$had" "$(show "$dst" | first)" ;;
    change)
        # Check ownership right before writing: replace would take over a foreign route.
        cur=$(show "$dst") || {
            fail "cannot read the route to $dst; skipped"
            continue
        }
        owner=$(foreign_owner "$cur")
        if [ -n "$owner" ]; then
            conflict "$dst" "$via" "$who" "$owner" "$(printf '%s\n' "$cur" | first)"
            continue
        fi
        verb=replace
        [ -n "$cur" ] || verb=add
        if write "$verb" "$dst" "$via"; then
            changed=$((changed + 1))
            say "changed $dst via $had -> $via ($(pods "$who"))"
        else
            fail "failed to $verb $dst via $via ($(pods "$who"))"
        fi
        ;;
    esac
done <<EOF
$actions
EOF

# Adds and deletes go to the kernel in one `ip -batch` (one process, not one per route, which
# is what makes the post's loop slow). Neither can touch a foreign route: the kernel refuses to
# add a prefix that exists (File exists: reported, a conflict on the next run), and a delete
# names our protocol, which the kernel matches.
plan=$(printf '%s\n' "$actions" | awk '$1 == "add" || $1 == "remove"')
batch=$(printf '%s\n' "$plan" | awk -v proto="$PROTO" -v table="$TABLE" '
    function hops(v,    n, a, i, s) {
        n = split(v, a, ",")
        if (n == 1) return "via " a[1]
        for (i = 1; i <= n; i++) s = s (i > 1 ? " " : "") "nexthop via " a[i]
        return s
    }
    $1 == "add" { print "route add " $2 " proto " proto " table " table " " hops($3) }
    $1 == "remove" { print "route del " $2 " proto " proto " table " table }')
errs=
if [ -n "$batch" ]; then
    if [ -n "$dry" ]; then
        printf '%s\n' "$batch" | awk '{ print "ip " (index($3, ":") ? "-6 " : "-4 ") $0 }'
    else
        errs=$(printf '%s\n' "$batch" | ip -force -batch - 2>&1 >/dev/null)
    fi
fi
# ip -batch prints each failure's message, then "Command failed -:LINE"
report=$({
    printf '%s\n' "$errs" | sed 's/^/E /'
    printf '%s\n' "$plan" | sed 's/^/P /'
} | awk '
    $1 == "E" {
        sub(/^E /, "")
        if ($0 ~ /^Command failed -:[0-9]+/) { bad[substr($0, 18) + 0] = msg; msg = "" }
        else if ($0 != "") msg = msg == "" ? $0 : msg "; " $0
        next
    }
    $1 == "P" && NF > 2 {
        i++
        what = $5 == "-" ? "services" : "pods of " $5
        if ($2 == "remove" && !(i in bad)) print "ok remove removed stale", $3, "via", $6
        else if ($2 == "remove") print "fail remove failed to remove stale", $3 ":", bad[i]
        else if (i in bad) print "fail add failed to add", $3, "via", $4, "(" what "):", bad[i]
        else print "ok add added", $3, "via", $4, "(" what ")"
    }')
while read -r st act message; do
    case $st/$act in
    ok/add) added=$((added + 1)) ;;
    ok/remove) removed=$((removed + 1)) ;;
    fail/*) fail "$message" ;;
    *) continue ;;
    esac
    [ "$st" != ok ] || say "$message"
done <<EOF
$report
EOF
if [ "$failed" -gt "$SHOW_FAILED" ]; then
    warn "... and $((failed - SHOW_FAILED)) more failed writes (not shown)"
fi
if [ "$failed" -gt 1 ]; then
    if [ "$why_perm" -gt 0 ]; then
        cause="this is not run as root (writing routes needs CAP_NET_ADMIN)"
    elif [ "$why_exists" -gt 0 ] && [ "$why_exists" -ge "$why_link" ]; then
        cause="another writer (a routing daemon, another nosdn, a person) added these routes"
        cause="$cause between this run's read and its writes; the next run reports them"
    elif [ "$why_link" -gt 0 ]; then
        cause="a link went down or an address moved while this ran (the kernel could not"
        cause="$cause reach the next hops): check 'ip link' and 'ip addr'"
    else
        cause="see the kernel's messages above"
    fi
    warn "$failed writes failed; likely cause: $cause"
fi

label="node $node"
[ "$mode" = node ] || label="external host"
say "$label, table $TABLE, proto $PROTO: $added added, $changed changed, $removed removed," \
    "$kept unchanged, $conflicts conflicts, $failed failed," \
    "$skipped off-link${dry:+ (dry run: nothing written)}"
[ $((conflicts + failed)) -eq 0 ]
"""


def _default_note(target: Target | None) -> str:
    if target is None:
        return (
            "# Without options it detects the node; on a machine outside the cluster: --external."
        )
    if target.kind == "external":
        return (
            "# This copy was rendered with --external: without options it runs as an external host."
        )
    return (
        f"# This copy was rendered with --node {comment(target.node or '')}: it holds only that "
        "node's routes\n"
        "# and refuses to run on any other node."
    )


def script_routes(cluster: Cluster, target: Target | None) -> list[Route]:
    """The rows of the script's route table: the whole cluster's (external target) unless the
    script is pinned to one node."""
    if target is not None and target.kind == "node":
        try:
            return desired_routes(cluster, target)
        except UnknownNodeError as e:
            raise RenderError(f"--node {target.node}: no such node in the inventory") from e
    return desired_routes(cluster, EXTERNAL)


def render_script(cluster: Cluster, options: RenderOptions) -> str:
    """The whole script as text (see the module docstring)."""
    target = options.target
    if target is not None and target.kind == "router":
        raise RenderError(
            "the script is for hosts (nodes and external machines); for a router use "
            "--format frr, bird, cisco or junos"
        )
    protocol = check_protocol(options.protocol)
    table = check_table(options.table)
    check_cluster(cluster)
    rows = script_routes(cluster, target)
    # The data lines are read by awk, split on blanks and commas: every field is a plain
    # address, prefix or name (checked by `addr`, `net`, `name`), so none can hold a blank, a
    # comma or a line break, and no line can end the here-document early.
    node_lines = "".join(
        f"{name(n.name)} {','.join(addr(ip, n.name, 'ips') for ip in n.ips) or '-'}\n"
        for n in cluster.nodes
    )
    route_lines = "".join(
        f"{net(r.dst, r.node)} {','.join(addr(v, r.node) for v in r.via)} "
        f"{name(r.node) if r.node is not None else '-'}\n"
        for r in rows
    )
    if target is None:
        mode, only = "detect", ""
    elif target.kind == "external":
        mode, only = "external", ""
    else:
        mode, only = "node", name(target.node or "", None, "--node")
    args = f" --node {only}" if only else (" --external" if mode == "external" else "")
    header = (
        _HEADER.replace("@NAME@", SCRIPT_NAME)
        .replace("@CLUSTER@", comment(cluster.name).replace('"', "'"))
        .replace("@GENERATED@", generated_by())
        .replace("@RENDER_ARGS@", args)
        .replace("@DEFAULT_NOTE@", _default_note(target))
        .replace("@PROTO@", sh(protocol))
        .replace("@TABLE@", sh(table))
        .replace("@SHARE@", f"{DEFAULT_MAX_DELETE_SHARE:g}")
        .replace("@ALWAYS@", str(ALWAYS_ALLOWED_REMOVALS))
        .replace("@DEFAULT_MODE@", sh(mode))
        .replace("@ONLY_NODE@", sh(only) if only else "")
    )
    return header + node_lines + _MIDDLE + route_lines + _BODY


def script_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    return [RenderedFile(f"{SCRIPT_NAME}.sh", render_script(cluster, options), 0o755)]
