"""The stages one by one in Starlette's ``middleware=[...]`` list, the app answering.

Here the app's own handler produces the answer (think: it calls a model in-process)
and the stack in front of it caches, classifies and selects; the decision is in
``request.state.optiroute``.

    uvicorn examples.starlette_stages:app
"""

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from optiroute_mw import CacheMiddleware, ClassifyMiddleware, IngressMiddleware, SelectMiddleware
from optiroute_mw.registry import BackendSpec, ModelSpec, Registry
from optiroute_mw.select.policy import Selector

registry = Registry(
    [BackendSpec(name="in-process", base_url="http://in-process.invalid")],
    [
        ModelSpec(name="small", backend="in-process", tier="simple"),
        ModelSpec(name="large", backend="in-process", tier="complex", input_per_mtok=1.0),
    ],
)


async def completions(request: Request) -> JSONResponse:
    decision = request.state.optiroute
    text = f"{decision.model.name} would answer a {decision.classification.tier} prompt"
    return JSONResponse(
        {
            "id": "chatcmpl-example",
            "object": "chat.completion",
            "created": 0,
            "model": decision.model.name,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": text},
                }
            ],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
        }
    )


class UseSelection:
    """The last stage before the app: make the selected model the request's model."""

    def __init__(self, app):  # type: ignore[no-untyped-def]
        self.app = app

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        exchange = scope.get("state", {}).get("optiroute")
        if exchange is not None and exchange.selection is not None:
            exchange.model = exchange.selection.primary
        await self.app(scope, receive, send)


app = Starlette(
    routes=[Route("/v1/chat/completions", completions, methods=["POST"])],
    middleware=[
        Middleware(IngressMiddleware),
        Middleware(CacheMiddleware),
        Middleware(ClassifyMiddleware),
        Middleware(SelectMiddleware, selector=Selector(registry)),
        Middleware(UseSelection),
    ],
)
