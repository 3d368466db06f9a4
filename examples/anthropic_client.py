"""An Anthropic SDK client whose calls go through the sidecar, unchanged but its base URL.

    optiroute-mw serve &                      # the sidecar on 127.0.0.1:8080
    python examples/anthropic_client.py       # OPTIROUTE_URL=http://host:port to point elsewhere

The sidecar takes ``/v1/messages``, so the same cache and router serve Anthropic and
OpenAI clients alike: the model named here is the price ceiling, and the call may be
answered by a cheaper model of any backend (the ``x-optiroute-*`` headers say which).
The API key is the gateway's own key if it asks for one (optiroute-mw keys create),
never a provider key: those stay with the gateway.
"""

import os

import anthropic

URL = os.environ.get("OPTIROUTE_URL", "http://127.0.0.1:8080")
MODEL = os.environ.get("OPTIROUTE_EXAMPLE_MODEL", "claude-sonnet-4-6")


def main(base_url: str = URL) -> None:
    client = anthropic.Anthropic(
        base_url=base_url, api_key=os.environ.get("OPTIROUTE_API_KEY", "unused-without-auth")
    )
    try:
        raw = client.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=64,
            system="Answer in one short sentence.",
            messages=[{"role": "user", "content": "What is the capital of France?"}],
        )
        message = raw.parse()
        print(message.content[0].text)
        print(
            "answered by",
            raw.headers.get("x-optiroute-model"),
            "on",
            raw.headers.get("x-optiroute-backend"),
            "| cache:",
            raw.headers.get("x-optiroute-cache"),
        )
        with client.messages.stream(
            model=MODEL,
            max_tokens=64,
            messages=[{"role": "user", "content": "Count to five."}],
        ) as stream:
            for text in stream.text_stream:
                print(text, end="", flush=True)
        print()
    finally:
        client.close()


if __name__ == "__main__":
    main()
