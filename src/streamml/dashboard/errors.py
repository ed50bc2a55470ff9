"""What the dashboard's readers raise, for a page to show as a message instead of an exception box."""

from __future__ import annotations

from streamml.errors import StreamMLError


class ServiceDown(StreamMLError):
    """A service the dashboard reads did not answer; ``str()`` says which and why, for the page to show."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"{service} is not reachable: {reason}")
        self.service = service
        self.reason = reason


class ApiError(StreamMLError):
    """The API answered with an error status; ``detail`` is its ``{"detail": ...}``."""

    def __init__(self, status: int, detail: str) -> None:
        super().__init__(f"the API answered {status}: {detail}")
        self.status = status
        self.detail = detail
