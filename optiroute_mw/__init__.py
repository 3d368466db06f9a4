"""optiroute-mw: an LLM cost optimizer as a composable ASGI middleware stack.

cache → classify → select → breaker → forward, mounted with :func:`wrap`, run as
a sidecar (``optiroute-mw serve``) or in-process through
:class:`~optiroute_mw.transport.OptirouteTransport`.
"""

from .breaker.middleware import BreakerMiddleware
from .cache.middleware import CacheMiddleware
from .classify.middleware import ClassifyMiddleware
from .exchange import Exchange
from .ingress.middleware import IngressMiddleware
from .select.middleware import SelectMiddleware
from .settings import Settings, SettingsError
from .stack import Gateway, Optiroute, wrap
from .transport import OptirouteTransport

__all__ = [
    "BreakerMiddleware",
    "CacheMiddleware",
    "ClassifyMiddleware",
    "Exchange",
    "Gateway",
    "IngressMiddleware",
    "Optiroute",
    "OptirouteTransport",
    "SelectMiddleware",
    "Settings",
    "SettingsError",
    "wrap",
]
