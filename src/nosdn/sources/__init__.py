"""Sources of nodes: where a `Cluster` comes from when it is not an inventory file.

The Kubernetes source is split so that only `nosdn.sources.kubernetes` imports the Kubernetes
client: `nodes` turns a Node object (plain JSON) into a model `Node`, `cache` keeps the last
known state and makes an event that changes nothing cost nothing, `reflector` is the
list + watch loop (backoff, relist on 410, last known state kept while the API is away) and
`leader` elects one holder of a Lease. Each works on plain dicts and small protocols, so they
are tested against the emulator and against fakes alike. `select` decides where a command's
nodes come from (an inventory or the API) and reads them once.

Nothing is imported here: a command that reads an inventory imports `select` alone.
"""
