"""A registry whose routing is fixed, for tests that count what each backend did."""

from __future__ import annotations

from pathlib import Path

from optiroute_mw.settings import Settings

from .fake_openai import FakeOpenAI

# in cost mode "cheap" (primary) always goes first; "strong" (secondary) is its fallback
REGISTRY = """
replace_defaults: true
backends:
  - {{name: primary, base_url: "{primary}"}}
  - {{name: secondary, base_url: "{secondary}"}}
models:
  - {{name: cheap, upstream: small-up, backend: primary, tier: complex,
     input_per_mtok: 0.1, output_per_mtok: 0.4, quality: 0.5}}
  - {{name: strong, upstream: large-up, backend: secondary, tier: complex,
     input_per_mtok: 2.5, output_per_mtok: 10, quality: 0.9}}
"""
COST_MODE = {"x-optiroute-mode": "cost"}


def fixed_route_settings(
    folder: Path, primary: FakeOpenAI, secondary: FakeOpenAI, **overrides: object
) -> Settings:
    path = folder / "fixed-registry.yaml"
    path.write_text(REGISTRY.format(primary=primary.base_url, secondary=secondary.base_url))
    options: dict[str, object] = {
        "config": str(path),
        "local_model": "off",
        "read_timeout_s": 2.0,
        "connect_timeout_s": 1.0,
        "retry_rounds": 0,
    }
    options.update(overrides)
    return Settings.from_env({}, **options)
