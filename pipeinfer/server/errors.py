"""OpenAI-shaped errors: every failure the server answers has the body

    {"error": {"message": ..., "type": ..., "param": <the request field or null>, "code": ...}}

with the status codes OpenAI's clients expect (400 bad request, 401 bad key, 404 unknown route,
413 body too large, 503 overloaded, 500 internal). Request validation errors name the field in
``param`` (a dotted path such as ``messages.0.content``).
"""
from __future__ import annotations

from typing import Any, Dict, Optional

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 404: "not_found_error",
          405: "invalid_request_error", 413: "invalid_request_error", 503: "server_overloaded",
          500: "server_error"}  # fmt: skip


class APIError(Exception):
    """An error answered to the client as an OpenAI error body."""

    def __init__(self, status: int, message: str, param: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[Dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.headers = status, message, param, code, headers


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    return APIError(400, message, param, code)


def error_body(status: int, message: str, param: Optional[str] = None, code: Optional[str] = None) -> Dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "invalid_request_error"), "param": param,
                      "code": code}}


def error_response(e: APIError) -> JSONResponse:
    return JSONResponse(error_body(e.status, e.message, e.param, e.code), status_code=e.status, headers=e.headers)


def _field_path(loc: Any) -> Optional[str]:
    parts = [str(p) for p in loc if p != "body"]
    return ".".join(parts) if parts else None


async def _on_api_error(request: Request, e: APIError) -> JSONResponse:
    return error_response(e)


async def _on_validation(request: Request, e: RequestValidationError) -> JSONResponse:
    first = e.errors()[0] if e.errors() else {"loc": (), "msg": "invalid request", "type": ""}
    param = _field_path(first.get("loc", ()))
    if first.get("type") == "json_invalid":
        return error_response(bad_request(f"the request body is not valid JSON: {first.get('msg')}", None,
                                          "invalid_json"))
    msg = first.get("msg", "invalid value")
    where = f"'{param}'" if param else "the request body"
    return error_response(bad_request(f"{where}: {msg}", param, "invalid_value"))


async def _on_http(request: Request, e: StarletteHTTPException) -> JSONResponse:
    return JSONResponse(error_body(e.status_code, str(e.detail)), status_code=e.status_code,
                        headers=getattr(e, "headers", None))


def install(app: Any) -> None:
    """Registers the handlers that turn every error into an OpenAI error body."""
    app.add_exception_handler(APIError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http)
