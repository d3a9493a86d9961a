"""Discovery, the pipeline's source: one module (or folder) per provider API.

Each provider module owns its spec type, its spec parser and its provider class, and
registers them under its kind (registry.py); importing this package registers them all.
"""

from directservice.discovery import http_json, modelarts, pai_eas, static  # noqa: F401
from directservice.discovery.modelarts import provider as _modelarts  # noqa: F401
from directservice.discovery.registry import parse_provider, parse_spec, provider_for

__all__ = ["parse_provider", "parse_spec", "provider_for"]
