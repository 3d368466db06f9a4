"""Ingress: parsing, controls, API keys and tenants, rate limits, budgets."""

from .tenants import Tenant, TenantResolver

__all__ = ["Tenant", "TenantResolver"]
