"""HTTP plumbing for the server: OpenAI-shaped errors, SSE framing, a background uvicorn."""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator

import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException

from graphwright.engine import _openai_types as oa
from graphwright.engine.llm import RequestError

logger = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.body = status, oa.ErrorBody(message=message, type=type_, param=param, code=code)


def _error(status: int, body: oa.ErrorBody) -> JSONResponse:
    return JSONResponse(oa.ErrorResponse(error=body).model_dump(), status_code=status)


def _validation_error(exc: RequestValidationError | ValidationError) -> JSONResponse:
    errors = exc.errors()
    first = errors[0] if errors else {}
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return _error(
            400,
            oa.ErrorBody(
                message=f"the request body is not valid JSON: {first.get('msg')}",
                type="invalid_request_error",
                code="invalid_json",
            ),
        )
    msgs = "; ".join(
        f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
        for e in errors
    )
    return _error(
        400,
        oa.ErrorBody(
            message=msgs, type="invalid_request_error", param=loc[0] if loc else None, code="invalid_value"
        ),
    )


def install_error_handlers(app: FastAPI) -> None:
    """Every failure leaves as ``{"error": {message, type, param, code}}`` with a fitting status.

    FastAPI's own validation handler answers 422 with its own shape; OpenAI clients expect 400
    and this shape (``openai`` raises ``BadRequestError`` from it).
    """

    @app.exception_handler(RequestValidationError)
    async def _on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(ValidationError)
    async def _on_pydantic(_: Request, exc: ValidationError) -> JSONResponse:
        return _validation_error(exc)

    @app.exception_handler(RequestError)
    async def _on_request_error(_: Request, exc: RequestError) -> JSONResponse:
        return _error(
            400, oa.ErrorBody(message=str(exc), type="invalid_request_error", param=exc.param, code=exc.code)
        )

    @app.exception_handler(ApiError)
    async def _on_api_error(_: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.body)

    @app.exception_handler(HTTPException)
    async def _on_http(_: Request, exc: HTTPException) -> JSONResponse:
        kind = "not_found_error" if exc.status_code == 404 else "invalid_request_error"
        return _error(exc.status_code, oa.ErrorBody(message=str(exc.detail), type=kind))

    @app.exception_handler(Exception)
    async def _on_crash(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error in a request")
        return _error(500, oa.ErrorBody(message=f"internal error: {exc}", type="server_error"))


def sse(events: AsyncIterator[str]) -> StreamingResponse:
    async def body() -> AsyncIterator[str]:
        async for data in events:
            yield f"data: {data}\n\n"
        yield "data: [DONE]\n\n"

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


class BackgroundServer:
    """Runs an app under uvicorn in a daemon thread (tests, notebooks, an in-process eval)."""

    def __init__(self, app: FastAPI, host: str = "127.0.0.1", port: int = 0) -> None:
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="graphwright-server", daemon=True)
        self.host = host

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.05)):
            if self._server.started or not self._thread.is_alive():
                break
            deadline.wait(0.05)
        if not self._server.started:
            raise RuntimeError("the server did not start")
        return self

    @property
    def port(self) -> int:
        sockets = [s for srv in self._server.servers for s in srv.sockets]
        return int(sockets[0].getsockname()[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
