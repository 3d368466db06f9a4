"""The live dashboard: ``/optiroute/dashboard`` (a page) and ``/optiroute/stats`` (its JSON).

The page is plain HTML, CSS and JavaScript shipped in this package (charts are
inline SVG drawn by the script): nothing is fetched from anywhere but the sidecar,
and the Content-Security-Policy says so.  It polls the stats endpoint and redraws
in place; when the endpoint cannot be reached it says so and keeps the last data.
With ``OPTIROUTE_MASTER_KEY`` set the stats need that key (the page asks for it
and keeps it for the browser tab only); without, they are open like ``/metrics``.
"""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...wire import error_body
from .stats import compute

if TYPE_CHECKING:
    from ...stack import Gateway

ASSETS = {"page.html": "text/html", "app.js": "text/javascript", "app.css": "text/css"}
SECURITY_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


@cache
def asset(name: str) -> bytes:
    return files(__package__).joinpath(name).read_bytes()


def dashboard_routes(gateway: Gateway, prefix: str = "/optiroute") -> list[Route]:
    """The page, its two assets and the stats endpoint, for the sidecar's route list."""

    async def page(request: Request) -> Response:
        name = request.path_params.get("asset", "page.html")
        if name not in ASSETS:
            return Response(b"not found", status_code=404, media_type="text/plain")
        return Response(asset(name), media_type=ASSETS[name], headers=SECURITY_HEADERS)

    async def stats(request: Request) -> Response:
        access = gateway.access
        if access.master_digest is not None and not access.is_master(request.scope):
            body = error_body(
                "The stats need the master key.", "authentication_error", "invalid_master_key"
            )
            return Response(body, status_code=401, media_type="application/json")
        try:
            minutes = float(request.query_params.get("minutes", "60"))
        except ValueError:
            minutes = float("nan")
        if not 1 <= minutes <= 43_200:  # NaN fails too
            body = error_body(
                "'minutes' must be a number from 1 to 43200.",
                "invalid_request_error",
                "invalid_window",
                "minutes",
            )
            return Response(body, status_code=400, media_type="application/json")
        await gateway.start()
        return JSONResponse(await compute(gateway, minutes), headers={"cache-control": "no-store"})

    return [
        Route(f"{prefix}/dashboard", page, methods=["GET"]),
        Route(f"{prefix}/dashboard/{{asset}}", page, methods=["GET"]),
        Route(f"{prefix}/stats", stats, methods=["GET"]),
    ]
