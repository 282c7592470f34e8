"""The script, delivered and kept applied: a systemd oneshot service with a timer, and a
cloud-init file that installs both on first boot.

The post suggests "cloud-init or a script run by systemd or cron". A one-time run is not
enough: taking a link down deletes its gateway routes and bringing it up does not restore them
(flannel #1070), and a node that changes address leaves stale routes everywhere. So the unit is
re-run by a timer; the script writes nothing when nothing changed, so re-running is cheap. A
conflict or failed write makes the run exit 1, which shows as a failed unit in
``systemctl --failed`` and in the journal.

Both formats carry the same files at the same install paths (``RenderedFile.path`` is the path on
the machine, without the leading ``/``), so ``--out /`` installs the systemd format as is.
"""

from __future__ import annotations

from nosdn.model import DEFAULT_PROTOCOL, PROTOCOL_NAME, Cluster
from nosdn.render._base import (
    RenderedFile,
    RenderError,
    RenderOptions,
    check_protocol,
    generated_by,
)
from nosdn.render._quote import comment
from nosdn.render.script import SCRIPT_NAME, render_script

SCRIPT_PATH = f"usr/local/sbin/{SCRIPT_NAME}"
SERVICE_PATH = f"etc/systemd/system/{SCRIPT_NAME}.service"
TIMER_PATH = f"etc/systemd/system/{SCRIPT_NAME}.timer"
PROTOS_PATH = f"etc/iproute2/rt_protos.d/{PROTOCOL_NAME}.conf"


def _check_interval(interval: int) -> int:
    if isinstance(interval, bool) or not isinstance(interval, int) or not 5 <= interval <= 86400:
        raise RenderError(
            f"interval {interval!r}: seconds between two runs, from 5 to 86400 — "
            "60 repairs a lost route within a minute"
        )
    return interval


def _unit_text(text: str) -> str:
    """Text for a unit setting: one line (`comment`), and systemd expands ``%`` specifiers, so
    double them."""
    return comment(text).replace("%", "%%")


def _service(cluster: Cluster) -> str:
    return f"""\
# {generated_by()}
[Unit]
Description=nosdn pod routes for cluster {_unit_text(cluster.name)} (plain IP routes, no overlay)
Documentation=man:ip-route(8)
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/{SCRIPT_PATH}
"""


def _timer(interval: int) -> str:
    return f"""\
# {generated_by()}
# Re-applies the routes every {interval}s: a link flap deletes gateway routes and nothing else
# puts them back. A run with nothing to do writes nothing.
[Unit]
Description=Re-apply nosdn pod routes every {interval}s

[Timer]
OnBootSec=10s
OnUnitActiveSec={interval}s
AccuracySec=1s

[Install]
WantedBy=timers.target
"""


def _protos(protocol: int) -> str:
    # The same file `nosdn apply` installs (nosdn/data/rt_protos.nosdn.conf).
    return (
        "# nosdn: routes and nexthops written by nosdn carry this protocol number.\n"
        f'# Installed as /{PROTOS_PATH} so that `ip route` prints "proto {PROTOCOL_NAME}".\n'
        f"{protocol}\t{PROTOCOL_NAME}\n"
    )


def systemd_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    """The script, its oneshot service, its timer and (for protocol 157) its iproute2 name."""
    interval = _check_interval(options.interval)
    files = [
        RenderedFile(SCRIPT_PATH, render_script(cluster, options), 0o755),
        RenderedFile(SERVICE_PATH, _service(cluster)),
        RenderedFile(TIMER_PATH, _timer(interval)),
    ]
    if check_protocol(options.protocol) == DEFAULT_PROTOCOL:
        # Only nosdn's own number gets its name: another number may be named elsewhere.
        files.append(RenderedFile(PROTOS_PATH, _protos(options.protocol)))
    return files


def _block(text: str, indent: str) -> str:
    """``text`` as the body of a YAML literal block scalar (``|``), indented."""
    return "".join(f"{indent}{line}" if line.strip() else "\n" for line in text.splitlines(True))


def render_cloud_init(cluster: Cluster, options: RenderOptions) -> str:
    """A ``#cloud-config`` that writes the systemd files and starts the timer and a first run."""
    files = systemd_files(cluster, options)
    parts = [
        "#cloud-config\n",
        f"# nosdn: pod routes for Kubernetes cluster {comment(cluster.name)!r} as plain IP "
        "routes.\n",
        f"# {generated_by()}\n",
        f"# Installs /{SCRIPT_PATH} (the routes script, see its header), a systemd service\n",
        f"# and a timer that re-applies it every {options.interval}s, then runs it once.\n",
        f"# Check a node with: systemctl status {SCRIPT_NAME}.service; journalctl -u "
        f"{SCRIPT_NAME}\n",
        "write_files:\n",
    ]
    for f in files:
        parts += [
            f"  - path: /{f.path}\n",
            "    owner: root:root\n",
            f"    permissions: '0{f.mode:o}'\n",
            "    content: |\n",
            _block(f.content, "      "),
        ]
    parts += [
        "runcmd:\n",
        "  - [systemctl, daemon-reload]\n",
        f"  - [systemctl, enable, --now, {SCRIPT_NAME}.timer]\n",
        f"  - [systemctl, start, --no-block, {SCRIPT_NAME}.service]\n",
    ]
    return "".join(parts)


def cloud_init_files(cluster: Cluster, options: RenderOptions) -> list[RenderedFile]:
    return [RenderedFile("cloud-init.yaml", render_cloud_init(cluster, options))]
