"""The command line: ``optiroute-mw serve``, ``optiroute-mw keys``."""

from __future__ import annotations

import argparse
import sys

from .evaluate import add_eval_parser, run_eval
from .ingress.keys_cli import add_keys_parser, run_keys
from .settings import Settings, SettingsError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="optiroute-mw", description="LLM cost optimizer")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the OpenAI-compatible sidecar proxy")
    serve.add_argument("--host", help="bind address (OPTIROUTE_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (OPTIROUTE_PORT, default 8080)")
    serve.add_argument(
        "--workers", type=int, default=1, help="worker processes (metrics summed across them)"
    )
    add_keys_parser(commands)
    add_eval_parser(commands)
    args = parser.parse_args(argv)

    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    try:
        settings = Settings.from_env(**overrides)
        from .registry import build_registry

        build_registry(settings)  # a bad registry file fails here, not at the first request
    except SettingsError as exc:
        print(f"optiroute-mw: bad setting: {exc}", file=sys.stderr)
        return 2
    if args.command == "serve" and args.workers > 1:
        from .observe.multiprocess import serve_workers

        return serve_workers(settings, args.workers)
    if args.command == "serve":
        return serve_forever(settings)
    if args.command == "keys":
        return run_keys(args, settings)
    if args.command == "eval":
        return run_eval(args, settings)
    return 1


def serve_forever(settings: Settings) -> int:
    import uvicorn

    from .observe.logging import configure
    from .server import create_app

    configure(settings.log_level, settings.log_format)
    raise_open_files_limit()
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s),
        server_header=False,
        proxy_headers=False,  # nothing reads the client address: one layer less per call
    )
    uvicorn.Server(config).run()
    return 0


def raise_open_files_limit() -> None:
    """Soft limit up to the hard one: each stream holds two sockets (client, backend),
    and a soft limit of 1,024 would refuse connections at about 500 streams."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):  # not on this platform, or not allowed
        pass


if __name__ == "__main__":
    sys.exit(main())
