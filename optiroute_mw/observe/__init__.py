"""Metrics and logs: beside the request path, never in its way."""
