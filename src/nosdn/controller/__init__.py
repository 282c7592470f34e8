"""The cloud route controller: `nosdn controller --cloud aws|gce|azure`, a Deployment of
two replicas.

In a cloud the VPC route table is the cluster's router: it needs every pod subnet pointing at
its node's instance. This package keeps it so for a live cluster, with the Kubernetes Nodes as
the source (``spec.podCIDRs``, ``spec.providerID``) and `nosdn.backends.cloud.sync.sync` doing each
pass. It is built from the node agent's parts (node cache and watch, Lease elector, deletion
guard, metrics, probes, events, the ``NetworkUnavailable`` writer), generalised where one node
had to become many, so both daemons behave alike and share their tests' guarantees:
`config` (options), `view` (cluster and per-node verdicts, pure), `liveview` (the view kept
up to date one changed Node at a time), `gate` (leadership and the deletion guard in front of
every write), `loop` (the passes), `run` (threads and wiring).
"""
