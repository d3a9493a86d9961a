"""spec.provider.modelArts: the typed section and its parser (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from directservice.api.spec import SpecError, mapping
from directservice.discovery.fields import (
    BASE_URL,
    PATH_PARAM,
    SECRET_KEY,
    SECRET_NAME,
    FieldPaths,
    optional_text,
    optional_url,
    own_namespace_only,
    parse_fields,
    text,
    url,
)

AUTH_TOKEN, AUTH_PASSWORD, AUTH_ACCESS_KEY = "Token", "Password", "AccessKey"
DEFAULT_TOKEN_KEY = "token"
# The vendor's per-account ceiling; asking for more only earns 429s.
MAX_MODELARTS_CALLS_PER_MINUTE = 2000
# The vendor's per-IAM-sub-user limit, shared by every DirectService using that credential;
# raise it per DirectService (spec.rateBudget) or for the operator (--rate-budget).
DEFAULT_MODELARTS_CALLS_PER_MINUTE = 20.0


@dataclass(frozen=True)
class ModelArtsSpec:
    kind: ClassVar[str] = "modelArts"
    max_calls_per_minute: ClassVar[int] = MAX_MODELARTS_CALLS_PER_MINUTE
    default_calls_per_minute: ClassVar[float | None] = DEFAULT_MODELARTS_CALLS_PER_MINUTE

    endpoint: str
    project_id: str
    service_id: str
    secret_name: str
    auth_method: str = AUTH_PASSWORD
    token_key: str = DEFAULT_TOKEN_KEY
    iam_endpoint: str | None = None
    fields: FieldPaths = FieldPaths()

    def discovery_urls(self) -> tuple[str, ...]:
        return (self.endpoint,) + ((self.iam_endpoint,) if self.iam_endpoint else ())


def parse_model_arts(body: Mapping[str, Any], where: str) -> ModelArtsSpec:
    endpoint = url(body, "endpoint", where, BASE_URL)
    if body.get("credentialsSecretRef") is None:
        raise SpecError(f"{where}.credentialsSecretRef is required")
    ref_where = f"{where}.credentialsSecretRef"
    ref = mapping(body.get("credentialsSecretRef"), ref_where)
    own_namespace_only(ref, ref_where)
    secret = text(ref, "name", ref_where, SECRET_NAME)
    token_key = optional_text(ref, "tokenKey", ref_where, SECRET_KEY)
    iam = optional_url(body, "iamEndpoint", where, BASE_URL)
    method = body.get("authMethod")
    if method is None:
        # Inferred from what is set, so the common cases need no extra field.
        method = AUTH_TOKEN if token_key else AUTH_PASSWORD if iam else None
    if method not in (AUTH_TOKEN, AUTH_PASSWORD, AUTH_ACCESS_KEY):
        raise SpecError(
            f"{where}: set iamEndpoint (IAM password login), credentialsSecretRef.tokenKey "
            "(a ready token) or authMethod: AccessKey"
        )
    if method == AUTH_PASSWORD and not iam:
        raise SpecError(f"{where}.iamEndpoint is required with authMethod Password")
    if token_key and method != AUTH_TOKEN:
        raise SpecError(f"{where}.credentialsSecretRef.tokenKey is only used with authMethod Token")
    return ModelArtsSpec(
        endpoint=endpoint.rstrip("/"),
        project_id=text(body, "projectId", where, PATH_PARAM),
        service_id=text(body, "serviceId", where, PATH_PARAM),
        secret_name=secret,
        auth_method=str(method),
        token_key=token_key or DEFAULT_TOKEN_KEY,
        iam_endpoint=iam.rstrip("/") if iam else None,
        fields=parse_fields(body.get("fields"), f"{where}.fields"),
    )
