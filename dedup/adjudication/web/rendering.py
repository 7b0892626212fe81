"""What every page module shares: the templates, a page rendered with its user's roles, a
redirect, and the bounded form fields."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from dedup.adjudication.accounts import Principal

TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))

Text = Annotated[str, Form(max_length=1024)]
Reason = Annotated[str | None, Form(max_length=500)]


def render(
    request: Request,
    name: str,
    principal: Principal | None,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    roles = set() if principal is None else {r.value for r in principal.roles}
    return TEMPLATES.TemplateResponse(
        request,
        name,
        {"principal": principal, "roles": roles, **context},
        status_code=status_code,
    )


def see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)
