"""Errors in OpenAI's shape: ``{"error": {"message", "type", "param", "code"}}``, no tracebacks.

`ApiError` is what the server's own code raises; `from_exception` maps Brickwork's errors
(`brickwork.errors`) and pydantic's validation errors at the boundary:

    ConfigError          -> 400 invalid_request_error
    BrickNotFound        -> 404 model_not_found (an unknown model or brick)
    BackendError         -> 502 server_error (the engine failed)
    other BrickworkError -> 422 invalid_request_error
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from brickwork.errors import BrickworkError, ConfigError


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None, code: str | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.kind, self.param, self.code = status, kind, param, code

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else None
        return JSONResponse(self.body(), status_code=self.status, headers=headers)


def bad_request(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, message, param=param)


def from_exception(exc: BaseException) -> ApiError:
    """The `ApiError` for an exception raised while serving a request."""
    if isinstance(exc, ApiError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, ConfigError):
        return ApiError(400, str(exc))
    if isinstance(exc, BrickworkError):
        if name == "BrickNotFound":
            return ApiError(404, str(exc), param="model", code="model_not_found")
        if name == "BackendError":
            return ApiError(502, f"the engine failed: {exc}", kind="server_error")
        return ApiError(422, str(exc), code=name)
    return ApiError(500, f"internal error ({name}); see the server log", kind="server_error")


def from_validation(errors: list[dict[str, Any]]) -> ApiError:
    """One 400 naming every invalid field (pydantic's `errors()`)."""
    parts, first = [], None
    for e in errors:
        loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("body",) and not str(x).startswith("function-"))
        first = first or loc or None
        parts.append(f"{loc or 'body'}: {e.get('msg')}")
    return ApiError(400, "invalid request: " + "; ".join(parts), param=first)
