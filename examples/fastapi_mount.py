"""Mount the stack in front of an existing FastAPI app.

    OPTIROUTE_CONFIG=examples/registry.yaml uvicorn examples.fastapi_mount:app

POST /v1/chat/completions is answered by the stack (cache, routing, failover); every
other route, like /hello below, reaches the app untouched.
"""

from fastapi import FastAPI

import optiroute_mw

api = FastAPI()


@api.get("/hello")
async def hello() -> dict[str, str]:
    return {"hello": "world"}


app = optiroute_mw.wrap(api)
