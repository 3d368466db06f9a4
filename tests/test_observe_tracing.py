"""OpenTelemetry: a span per request and stage, GenAI attributes, context sent to the backend."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from support.fake_openai import FakeOpenAI, Fault
from support.observe import COST_MODE, fixed_route_settings
from support.serve import ServerThread

from optiroute_mw.observe import tracing
from optiroute_mw.registry import build_registry
from optiroute_mw.server import create_app
from optiroute_mw.settings import Settings
from optiroute_mw.stack import Gateway

trace = pytest.importorskip("opentelemetry.trace")
sdk_trace = pytest.importorskip("opentelemetry.sdk.trace")
export = pytest.importorskip("opentelemetry.sdk.trace.export")
memory = pytest.importorskip("opentelemetry.sdk.trace.export.in_memory_span_exporter")

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[memory.InMemorySpanExporter]:
    provider = trace.get_tracer_provider()
    if not isinstance(provider, sdk_trace.TracerProvider):
        provider = sdk_trace.TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = memory.InMemorySpanExporter()
    processor = export.SimpleSpanProcessor(exporter)
    provider.add_span_processor(processor)
    yield exporter
    processor.shutdown()


def test_spans_per_request_and_stage_with_genai_attributes(
    tmp_path: Path,
    fake: FakeOpenAI,
    fake2: FakeOpenAI,
    spans: memory.InMemorySpanExporter,
) -> None:
    settings = fixed_route_settings(tmp_path, fake, fake2, otel="on")
    body = {"model": "strong", "messages": [{"role": "user", "content": "what is 2+2"}]}
    with ServerThread(create_app(settings)) as server:
        fake.script(Fault(status=500))  # the cheap model fails once: the strong one answers
        answer = httpx.post(
            server.url + "/v1/chat/completions",
            json=body,
            headers={"traceparent": CALLER, **COST_MODE},
        )
    assert answer.status_code == 200
    finished = spans.get_finished_spans()
    by_name = {span.name: span for span in finished}
    request = by_name["chat strong"]  # named "{operation} {requested model}"
    assert request.kind == trace.SpanKind.SERVER
    assert request.context.trace_id == int(CALLER_TRACE, 16)  # continues the caller's trace
    attrs = request.attributes
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "strong"
    assert attrs["gen_ai.response.model"] == "large-up"
    assert attrs["gen_ai.system"] == attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.usage.input_tokens"] > 0 and attrs["gen_ai.usage.output_tokens"] > 0
    assert attrs["optiroute.cache"] == "miss" and attrs["optiroute.attempts"] == 2
    assert attrs["http.response.status_code"] == 200
    assert attrs["optiroute.request_id"] == answer.headers["x-request-id"]

    stages = [s.name for s in finished if s.name.startswith("optiroute.")]
    for stage in ("ingress", "cache", "classify", "select", "breaker"):
        assert f"optiroute.{stage}" in stages
    calls = [s for s in finished if s.kind == trace.SpanKind.CLIENT]
    assert len(calls) == 2  # one span per backend call
    failed, served = calls
    assert failed.attributes["error.type"] == "http_500"
    assert failed.status.status_code == trace.StatusCode.ERROR
    assert served.attributes["gen_ai.request.model"] == "large-up"
    assert served.attributes["server.address"] == "127.0.0.1"
    assert served.attributes["gen_ai.usage.output_tokens"] > 0
    ids = {s.context.span_id: s for s in finished}
    parent = ids[served.parent.span_id]
    assert parent.name == "optiroute.breaker"
    for span in finished:  # one trace, every span under the request span
        assert span.context.trace_id == request.context.trace_id

    # the backend saw the call's own span as its parent
    seen = {r.headers.get("traceparent") for r in fake.requests}
    assert f"00-{CALLER_TRACE}-{failed.context.span_id:016x}-01" in seen


def test_stream_and_cache_hit_spans(
    make_settings: Callable[..., Settings], spans: memory.InMemorySpanExporter
) -> None:
    settings = make_settings(otel="on")
    body = {"model": "auto", "messages": [{"role": "user", "content": "hello"}], "stream": True}
    with ServerThread(create_app(settings)) as server:
        for _ in range(2):
            with httpx.stream("POST", server.url + "/v1/chat/completions", json=body) as r:
                r.read()
    requests = [s for s in spans.get_finished_spans() if s.kind == trace.SpanKind.SERVER]
    assert [s.attributes["optiroute.cache"] for s in requests] == ["miss", "hit-exact"]
    assert all(s.attributes["optiroute.stream"] for s in requests)
    assert requests[0].name == "chat auto"


def test_off_means_no_wrappers_and_no_spans(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()  # OPTIROUTE_OTEL defaults to off
    pipeline = Gateway(settings).build(build_registry(settings))
    assert tracing.instrument(pipeline, settings) is pipeline
    node = pipeline
    while hasattr(node, "app"):
        assert not isinstance(node.app, tracing.StageSpan)
        node = node.app
