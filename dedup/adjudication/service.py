"""The review service: ``create_app`` wires the API, the pages, errors and ``/metrics``.

What ``dedup serve`` does (it serves until interrupted, so the example is not run):

>>> settings = load_settings()                                        # doctest: +SKIP
>>> engine = database.connect(settings.adjudication_database_url())  # doctest: +SKIP
>>> database.migrate(engine)                                          # doctest: +SKIP
>>> app = create_app(settings.adjudication, engine)                   # doctest: +SKIP
>>> uvicorn.run(app, host="127.0.0.1", port=8000)                     # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import Engine
from sqlalchemy.exc import DataError

from dedup.adjudication import database
from dedup.adjudication.access import Forbidden
from dedup.adjudication.accounts import LocalIdentityProvider
from dedup.adjudication.context import Context, utc_now
from dedup.adjudication.erasure import RecordEraser, UnknownEnrollment
from dedup.adjudication.queue import CaseNotFound
from dedup.adjudication.queue_metrics import count_response, service_registry
from dedup.adjudication.web import api, pages
from dedup.adjudication.web.guards import (
    BadCsrf,
    ClientThrottle,
    ServiceState,
    Unauthenticated,
    principal_of,
    security_headers,
)
from dedup.errors import AdjudicationError
from dedup.settings import AdjudicationSettings

STATIC = Path(__file__).parent / "web" / "static"


def create_app(
    settings: AdjudicationSettings,
    engine: Engine,
    clock: Callable[[], datetime] | None = None,
    eraser: RecordEraser | None = None,
) -> FastAPI:
    """The service on ``engine`` (already migrated: see ``database.migrate``). ``eraser`` is
    the lake and gallery part of an erasure (``dedup serve`` passes the pipelines' one);
    without it an erasure reaches the review database only, and says so."""
    database.require_current(engine)
    identity = LocalIdentityProvider(
        settings.max_failed_logins, timedelta(minutes=settings.lockout_minutes)
    )
    context = Context(database.sessions(engine), settings, clock or utc_now)
    state = ServiceState(context, identity, ClientThrottle(settings.logins_per_client_per_minute))
    app = FastAPI(
        title="dedup review service",
        version="1",
        description=(
            "Human adjudication of possible duplicate enrollments: import candidates, "
            "claim and judge cases under four eyes, export decisions. Every view and "
            "decision is audited."
        ),
    )
    app.state.service = state
    app.state.eraser = eraser
    app.include_router(api.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    registry = service_registry(context)

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.middleware("http")
    async def headers(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if _holds_nul(request):
            response: Response = JSONResponse(
                {"detail": "the address must not contain NUL characters"}, status_code=422
            )
        else:
            try:
                response = await call_next(request)
            except Exception:
                count_response(_route(request), 500)  # answered by Starlette's own handler
                raise
        count_response(_route(request), response.status_code)
        security_headers(response)
        return response

    _error_handlers(app)
    return app


def _route(request: Request) -> str:
    """The matched route's template (``/api/cases/{case_id}``), so that a label never holds
    an id; ``unmatched`` for an address no route serves."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))


def _holds_nul(request: Request) -> bool:
    """A NUL in the path or query string (raw or percent-encoded)."""
    path: str = request.scope.get("path", "")
    raw = bytes(request.scope.get("raw_path") or b"") + b"?" + bytes(request.scope["query_string"])
    return "\x00" in path or b"\x00" in raw or b"%00" in raw


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _page(request: Request, status: int, message: str) -> Response:
    return pages.render(
        request, "message.html", principal_of(request), status_code=status, message=message
    )


def _error_handlers(app: FastAPI) -> None:
    @app.exception_handler(Unauthenticated)
    async def unauthenticated(request: Request, _: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": "not logged in"}, status_code=401)
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(Forbidden)
    @app.exception_handler(BadCsrf)
    async def forbidden(request: Request, exc: Exception) -> Response:
        message = exc.message if isinstance(exc, Forbidden) else "forbidden"
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=403)
        return _page(request, 403, f"Forbidden: {message}. This refusal was recorded.")

    @app.exception_handler(CaseNotFound)
    @app.exception_handler(UnknownEnrollment)
    async def not_found(request: Request, exc: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=404)
        return _page(request, 404, str(exc))

    @app.exception_handler(DataError)
    async def bad_value(request: Request, exc: Exception) -> Response:
        # A value the database cannot store (over-long, NUL): the request is at fault.
        message = "a value is too long or holds characters the database cannot store"
        if _wants_json(request):
            return JSONResponse({"detail": message}, status_code=422)
        return _page(request, 422, message)

    @app.exception_handler(AdjudicationError)
    async def conflict(request: Request, exc: Exception) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": str(exc)}, status_code=409)
        return _page(request, 409, str(exc))
