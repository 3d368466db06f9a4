"""The sidecar: the stack around the forwarder, plus health, readiness, metrics, models."""

from __future__ import annotations

import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from .admin import AdminAPI
from .observe.dashboard import dashboard_routes
from .registry import AUTO
from .settings import Settings
from .stack import Gateway, Optiroute


def create_app(settings: Settings | None = None, gateway: Gateway | None = None) -> Optiroute:
    gateway = gateway or Gateway(settings)

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        local = gateway.local_model
        detail = {
            "started": gateway.started,
            "models": gateway.registry.names() if gateway.started else [],
            "circuits": gateway.board.states(),
            "local_model": None
            if local is None
            else {"healthy": local.healthy, "restarts": local.restarts},
        }
        ready = gateway.started and bool(detail["models"]) and (local is None or local.healthy)
        return JSONResponse(
            {"status": "ready" if ready else "not_ready", **detail},
            status_code=200 if ready else 503,
        )

    async def metrics(request: Request) -> Response:
        return Response(gateway.metrics.render(), media_type=gateway.metrics.content_type)

    async def models(request: Request) -> Response:
        await gateway.start()
        created = int(time.time())
        seen: dict[str, str] = {AUTO: "optiroute"}
        for model in gateway.registry.models:
            seen.setdefault(model.name, model.backend)
        data = [
            {"id": name, "object": "model", "created": created, "owned_by": owner}
            for name, owner in seen.items()
        ]
        return JSONResponse({"object": "list", "data": data})

    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Route("/v1/models", models),
        # Anthropic SDK clients and embeddings: the gateway dispatches them by path
        Route("/v1/messages", gateway, methods=["POST"]),
        Route("/v1/embeddings", gateway, methods=["POST"]),
        Mount("/optiroute/admin", AdminAPI(gateway).app),  # behind OPTIROUTE_MASTER_KEY
        *dashboard_routes(gateway),  # /optiroute/dashboard and /optiroute/stats
    ]
    return Optiroute(Starlette(routes=routes), gateway, freeze_gc=True)
