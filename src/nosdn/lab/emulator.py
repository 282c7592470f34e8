"""The lab's light API server (``nosdn lab up --agents --api emulator``): the `kmock` Kubernetes
emulator as a process, for machines without the real kube-apiserver built.

    python -m nosdn.lab.emulator --host 0.0.0.0 --port 18080

kmock is a library with no server command of its own; this starts its emulator on a TCP port,
declares the resources the agent uses (so a list before any object exists is an empty list,
not 404), prints ``ready PORT`` and serves until killed. No TLS, no authentication, no
resourceVersion, no status subresource: the lab's agents and `nosdn apply` reach it with
``--kube-server``. kmock is a development dependency (``pip install kmock``); the tests' and
benchmarks' own copy, with list paging and fault injection, is ``tests/kmockd.py``.
"""

from __future__ import annotations

import argparse
import asyncio

RESOURCES = {
    "v1/nodes": ("Node", False),
    "v1/events": ("Event", True),
    "coordination.k8s.io/v1/leases": ("Lease", True),
}
DEFAULT_PORT = 18080


async def serve(host: str, port: int) -> None:
    import kmock

    async with kmock.KubernetesEmulator() as k, kmock.Server(k, host=host, port=port) as srv:
        for res, (kind, namespaced) in RESOURCES.items():
            k.resources[res] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)
        print(f"ready {srv.port}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser(description="kmock's Kubernetes emulator on a TCP port")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    a = p.parse_args()
    asyncio.run(serve(a.host, a.port))


if __name__ == "__main__":
    main()
