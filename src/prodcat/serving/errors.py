"""The API's one error shape: ``{"error": {"code": ..., "message": ...}}`` with a fitting status.

Every failure a client can cause is raised as :class:`ServingError` (or mapped to one by the
exception handlers in :mod:`prodcat.serving.app`), so a bad request never becomes a 500.
"""

from __future__ import annotations

from starlette.responses import JSONResponse

#: Default machine-readable code for each status the API returns.
STATUS_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    408: "request_timeout",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    500: "internal_error",
    503: "not_ready",
}


class ServingError(Exception):
    """A request the API refuses: ``status`` (HTTP), ``code`` (stable, for clients) and a message
    a person can act on."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


def error_body(code: str, message: str) -> dict:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str | None, message: str,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    code = code or STATUS_CODES.get(status, "error")
    return JSONResponse(error_body(code, message), status_code=status, headers=headers)
