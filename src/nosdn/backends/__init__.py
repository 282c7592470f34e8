"""Backends: where routes go (the kernel, a cloud route table, ...).

Each backend is the only module that imports its SDK, and exposes the same small surface
(`nosdn.backends.base.Backend`): list the routes it finds, apply a diff. The shared loop in
`nosdn.reconcile` does the planning; a backend never decides which routes a cluster needs.
"""
