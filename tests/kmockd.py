"""Run the `kmock` Kubernetes emulator as a server process (tests and bench/agent.py start it).

    python tests/kmockd.py --host 0.0.0.0 --port 18080 [--seed objects.json]

kmock is a library with no server command of its own; this starts its `KubernetesEmulator`
on a TCP port, declares the resources the agent uses (so listing them before any object
exists answers an empty list, not 404), optionally creates seed objects through its own HTTP
API (so they are stored exactly as if a client had created them), prints ``ready PORT`` and
serves until killed. It runs as its own process so a test can stop the API (SIGSTOP, SIGKILL)
while the agent keeps running, and inside a network namespace when the agent needs to reach it
over a veth. ``--max-node-lists N`` makes node lists fail (503) after N of them: the one fault
the deletion-guard test needs (a list that cannot be confirmed).

What kmock does differently from a real API server (and how the agent copes, see
`nosdn.sources.reflector`): no resourceVersion (lists say ``"..."``), watches ignore
resourceVersion and replay every existing object as ADDED before live events, never send
BOOKMARK or 410; PATCH is a plain recursive dict merge (a strategic-merge patch of
``status.conditions`` replaces the whole list); no PUT; no field or label selectors. Besides
paging, one change here: a GET or PATCH of one object finds it by its key, not by testing every
object (kmock's O(n) made a PATCH cost ~10 ms at 5,000 Nodes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path
from typing import Any

import kmock

RESOURCES = {
    "v1/nodes": ("Node", False),
    "v1/events": ("Event", True),
    "coordination.k8s.io/v1/leases": ("Lease", True),
}


class Emulator(kmock.KubernetesEmulator):
    """The emulator, plus list paging, watch timeouts and one fault to inject.

    Paging: kmock ignores ``limit``/``continue`` and sends every object in one response; a real
    API server pages (the agent asks for 500 at a time), which decides the agent's peak memory
    on a big cluster. So node lists here honour ``limit`` with an offset as ``continue`` token
    (the one liberty taken; kmock's other gaps are left as they are).
    Watch timeouts: kmock's watches never end; a real API server ends each one after its
    ``timeoutSeconds`` (the agent asks for less than its dead-watch deadline, so a quiet watch
    that never ended would pass for a dead server). So watches here end then, as there, and a
    watch resumed with a resourceVersion first hears of every deletion (`_tombstones`), which
    kmock, with no resourceVersions, cannot replay from the right point.
    Fault: ``max_lists`` fails node lists (503) after that many complete lists.
    """

    max_lists: int | None = None
    lists = 0

    async def _serve_list(self, request: kmock.Request) -> Any:
        nodes = request.resource is not None and request.resource.plural == "nodes"
        params = request.params or {}
        offset = int(params.get("continue") or 0)
        if nodes and offset == 0:
            type(self).lists += 1
            if self.max_lists is not None and type(self).lists > self.max_lists:
                raise kmock.KubernetesError(503, "ServiceUnavailable", "injected: lists fail")
        result = await super()._serve_list(request)
        limit = int(params.get("limit") or 0)
        if nodes and limit > 0:
            items = result["items"]
            result["items"] = items[offset : offset + limit]
            if offset + limit < len(items):
                result["metadata"]["continue"] = str(offset + limit)
        return result

    async def _serve_watch(self, request: kmock.Request) -> Any:
        try:
            timeout = float((request.params or {}).get("timeoutSeconds") or 0)
        except ValueError:
            timeout = 0.0
        inner = super()._serve_watch(request)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        try:
            yield await anext(inner)  # kmock's first (empty) chunk: the response headers
            if (request.params or {}).get("resourceVersion"):
                for event in self._tombstones(request):
                    yield event
            while True:
                left = end - loop.time()
                if timeout > 0 and left <= 0:
                    return
                try:
                    item = await asyncio.wait_for(anext(inner), left if timeout > 0 else None)
                except (TimeoutError, StopAsyncIteration):
                    return
                yield item
        finally:
            await inner.aclose()

    def _tombstones(self, request: kmock.Request) -> list[dict[str, Any]]:
        """A DELETED event for every object of the resource deleted so far (and not created
        again). A resumed watch replays the live objects as ADDED; without these, an object
        deleted between two watches would live on in the client's cache, where a real server
        would have sent its DELETED from the resourceVersion the client resumed at. Clients
        ignore the deletion of an object they never had."""
        return [
            {"type": "DELETED", "object": obj.last.raw}
            for (resource, _ns, _name), obj in self._objects.items()
            if resource == request.resource and obj.deleted
        ]

    # kmock answers a GET or PATCH of one object by testing every stored object against the
    # request (O(n): ~10 ms a PATCH at 5,000 Nodes, most of the change latency a benchmark
    # would measure, and it paces the watch events). The same object, found by its key:
    async def _serve_fetch(self, request: kmock.Request) -> Any:
        obj = self._by_key(request)
        if obj is None or obj.deleted:
            return await super()._serve_fetch(request)  # kmock's own 404
        return obj.raw

    async def _serve_update(self, request: kmock.Request) -> Any:
        obj = self._by_key(request)
        if obj is None:
            return await super()._serve_update(request)
        return obj.last.raw

    def _by_key(self, request: kmock.Request) -> Any:
        if request.resource is None or request.name is None:
            return None
        key = (request.resource, request.namespace, request.name)
        return self._objects[key] if key in self._objects else None  # noqa: SIM401 (no .get)


async def serve(host: str, port: int, seed: list[dict[str, Any]], max_lists: int | None) -> None:
    Emulator.max_lists = max_lists
    async with Emulator() as k, kmock.Server(k, host=host, port=port) as srv:
        for res, (kind, namespaced) in RESOURCES.items():
            k.resources[res] = kmock.ResourceInfo(kind=kind, namespaced=namespaced)
        # Stored directly (kmock's own ``objects`` API): creating them over HTTP costs O(n)
        # per request in kmock, minutes for 5,000 nodes. No watcher exists yet to miss events.
        for obj in seed:
            meta = obj.get("metadata") or {}
            api = obj.get("apiVersion", "v1")
            plural = {"Node": "nodes", "Event": "events", "Lease": "leases"}[obj["kind"]]
            k.objects[f"{api}/{plural}", meta.get("namespace"), meta["name"]] = obj
        print(f"ready {srv.port}", flush=True)
        await asyncio.Event().wait()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--seed", type=Path)
    p.add_argument("--max-node-lists", type=int, help="answer 503 to node lists after N")
    a = p.parse_args()
    seed = json.loads(a.seed.read_text()) if a.seed else []
    asyncio.run(serve(a.host, a.port, seed, a.max_node_lists))


if __name__ == "__main__":
    main()
