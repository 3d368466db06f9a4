"""An app's own outbound OpenAI SDK calls, run through the stack in-process.

    OPTIROUTE_CONFIG=examples/registry.yaml python examples/outbound_openai.py

The SDK thinks it talks to the public API; the transport sends each call through
cache → classify → select → breaker → forward to the backend the stack chooses.
"""

import asyncio

import httpx2
import openai

from optiroute_mw import Gateway
from optiroute_mw.transport import OptirouteTransport2


async def main() -> None:
    gateway = Gateway()
    client = openai.AsyncOpenAI(
        api_key="unused-by-the-stack",
        http_client=httpx2.AsyncClient(transport=OptirouteTransport2(gateway)),
    )
    try:
        answer = await client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Say hello in French."}],
            max_tokens=20,
        )
        print(answer.choices[0].message.content)
        stream = await client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "Count to five."}],
            max_tokens=30,
            stream=True,
        )
        async for chunk in stream:
            if chunk.choices:
                print(chunk.choices[0].delta.content or "", end="", flush=True)
        print()
    finally:
        await client.close()
        await gateway.stop()


if __name__ == "__main__":
    asyncio.run(main())
