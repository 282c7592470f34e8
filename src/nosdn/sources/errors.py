"""The few ways a talk with the Kubernetes API can fail, as nosdn's own exceptions.

The client library's exceptions stay inside `nosdn.sources.kubernetes`; everything above sees
only these, so the watch loop, the elector and the agent can be tested with fakes.
"""

from __future__ import annotations


class ApiError(Exception):
    """A request failed: ``status`` is the HTTP status (0 when the server was not reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


class ApiUnavailableError(ApiError):
    """The API server could not be reached, or broke the connection."""


class WatchSilentError(ApiUnavailableError):
    """A watch brought nothing (no event, no bookmark, not its end) within its deadline: the
    server is gone without closing the connection."""


class WatchExpiredError(ApiError):
    """HTTP 410 Gone: the resourceVersion a watch resumed from is too old; list again."""

    def __init__(self, message: str = "watch expired (410 Gone)") -> None:
        super().__init__(message, 410)


class ConflictError(ApiError):
    """HTTP 409: the object exists already, or changed since it was read."""

    def __init__(self, message: str) -> None:
        super().__init__(message, 409)


class NotFoundError(ApiError):
    def __init__(self, message: str) -> None:
        super().__init__(message, 404)
