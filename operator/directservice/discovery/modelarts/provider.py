"""Huawei Cloud ModelArts VPC direct-connect discovery ("host_endpoints").

GET {endpoint}/v1/{projectId}/services/{serviceId}/predict/endpoints?type=host_endpoints,
authenticated by one of:
- Token: a ready X-Auth-Token from a Secret key (expires after 24 h; the user renews it);
- Password: IAM login with username/password/domainName from a Secret; the token is cached
  per credential, renewed at 80 % of its lifetime, and renewed once more at once when the
  API says it is no longer valid (e.g. after a password change);
- AccessKey: each call signed with accessKey/secretKey (SDK-HMAC-SHA256, sigv.py).

The answer's JSON shape is not published anywhere we could find, so the entry list and each
entry's fields are found by guessing (providers/extract.py) unless spec fields name them.
Calls draw on a budget shared per account identity: 20 calls/min per IAM sub-user.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from directservice.api.reasons import Reason
from directservice.api.spec import DEFAULT_ALLOWED_CIDRS, Network
from directservice.core.model import Discovery, DiscoveryError
from directservice.discovery.base import (
    AnswerCache,
    BudgetSeat,
    budgeted_request,
    check_status,
    decode_json,
    discover_scrubbed,
    error_code,
)
from directservice.discovery.budget import BudgetKey
from directservice.discovery.credentials import (
    CachedToken,
    TokenCache,
    digest,
    header_value,
    read_keys,
)
from directservice.discovery.extract import locate_list, parse_entries
from directservice.discovery.fields import FieldPaths
from directservice.discovery.httpclient import HttpClient, HttpResponse, redact_url
from directservice.discovery.modelarts import sigv
from directservice.discovery.modelarts.iam import IamCredentials, fetch_token
from directservice.discovery.modelarts.spec import (
    AUTH_ACCESS_KEY,
    AUTH_TOKEN,
    ModelArtsSpec,
    parse_model_arts,
)
from directservice.discovery.registry import ProviderContext, ProviderKind, register

log = logging.getLogger(__name__)

# API Gateway codes meaning "this token is not (or no longer) valid": APIG(W).0301 is
# "Incorrect IAM authentication information" (expired, undecryptable or missing token) and
# APIG(W).0307 "The token must be updated". Any 401 counts as well.
TOKEN_INVALID_CODES = frozenset({"APIG.0301", "APIGW.0301", "APIG.0307", "APIGW.0307"})
PASSWORD_KEYS = ("username", "password", "domainName")
PROJECT_KEYS = ("projectId", "projectName")
ACCESS_KEYS = ("accessKey", "secretKey")

GUESS_ALL = FieldPaths()  # no paths given: find the list and every field by guessing
UtcNow = Callable[[], datetime.datetime]


def endpoints_url(spec: ModelArtsSpec) -> str:
    project, service = quote(spec.project_id, safe=""), quote(spec.service_id, safe="")
    return f"{spec.endpoint}/v1/{project}/services/{service}/predict/endpoints?type=host_endpoints"


def token_refused(resp: HttpResponse) -> bool:
    return resp.status == 401 or error_code(resp) in TOKEN_INVALID_CODES


def parse_host_endpoints(
    payload: Any,
    fields: FieldPaths = GUESS_ALL,
    allowed: Sequence[Network] = DEFAULT_ALLOWED_CIDRS,
) -> Discovery:
    """The instances in an answer of unknown shape (see extract.find_instance_list)."""
    items = locate_list(payload, fields.list, fields.ip)
    return parse_entries(items, fields, allowed, guess=True)


@dataclass(frozen=True)
class _Auth:
    budget: BudgetKey
    headers: Callable[[], dict[str, str]]  # per request: AK/SK signs with the current time
    cache_key: str | None = None  # set when the token can be renewed (IAM password login)
    token: CachedToken | None = None


class ModelArtsProvider(BudgetSeat):
    kind = ModelArtsSpec.kind

    def __init__(
        self, spec: ModelArtsSpec, ctx: ProviderContext, utcnow: UtcNow | None = None
    ) -> None:
        super().__init__(ctx.member)
        self.spec = spec
        self.timeouts = ctx.timeouts
        self.namespace = ctx.namespace
        self.secrets = ctx.secrets
        # A private cache when none is shared: every spec change then logs in again.
        self.tokens = ctx.tokens if ctx.tokens is not None else TokenCache()
        self.allowed = ctx.allowed
        self.calls_per_minute = ctx.calls_per_minute
        self.utcnow = utcnow or (lambda: datetime.datetime.now(datetime.UTC))
        self.url = endpoints_url(spec)
        self.secret_label = f"Secret {ctx.namespace}/{spec.secret_name}"
        # The budget key needs the Secret's content; its reference is known to every replica.
        self.shard_key = f"modelArts/{ctx.namespace}/{spec.secret_name}"
        self.answers = AnswerCache()

    async def discover(self, http: HttpClient) -> Discovery:
        return await discover_scrubbed(lambda used: self._discover(http, used))

    async def _discover(self, http: HttpClient, used: list[str]) -> Discovery:
        auth = await self._auth(http, used)
        resp = await self._call(http, auth)
        if auth.cache_key is not None and auth.token is not None and token_refused(resp):
            # Tokens can die before their expiry (password change, account arrears): log in
            # again, once. A second refusal is reported, not retried in a loop.
            log.info("%s: the cached IAM token was refused; logging in again", redact_url(self.url))
            self.tokens.invalidate(auth.cache_key, auth.token)
            auth = await self._auth(http, used)
            resp = await self._call(http, auth)
        if resp.status in (401, 403):
            raise self._unauthorized(resp)
        check_status(resp)
        return self.answers.parse(
            resp.body,
            lambda: parse_host_endpoints(decode_json(resp), self.spec.fields, self.allowed),
        )

    async def _call(self, http: HttpClient, auth: _Auth) -> HttpResponse:
        return await budgeted_request(
            http,
            self.member,
            auth.budget,
            "GET",
            self.url,
            timeouts=self.timeouts,
            headers={"Accept": "application/json", **auth.headers()},
            share_window=self.share_window,
            caller=self.caller,
        )

    async def _auth(self, http: HttpClient, used: list[str]) -> _Auth:
        spec, ns = self.spec, self.namespace
        if spec.auth_method == AUTH_TOKEN:
            values = await read_keys(self.secrets, ns, spec.secret_name, (spec.token_key,))
            what = f"key {spec.token_key} of {self.secret_label}"
            used.append(values[spec.token_key].strip())
            token = header_value(values[spec.token_key], what)
            budget = BudgetKey(f"modelArts/token-{digest(token)}", self.calls_per_minute)
            return _Auth(budget, lambda: {"X-Auth-Token": token})
        if spec.auth_method == AUTH_ACCESS_KEY:
            values = await read_keys(self.secrets, ns, spec.secret_name, ACCESS_KEYS)
            used += [values["secretKey"]]
            access = header_value(values["accessKey"], f"key accessKey of {self.secret_label}")
            secret = values["secretKey"]
            budget = BudgetKey(f"modelArts/ak-{digest(access)}", self.calls_per_minute)

            def signed() -> dict[str, str]:
                extra = {"X-Project-Id": spec.project_id}
                return sigv.sign(access, secret, "GET", self.url, extra, now=self.utcnow())

            return _Auth(budget, signed)
        return await self._password_auth(http, used)

    async def _password_auth(self, http: HttpClient, used: list[str]) -> _Auth:
        spec = self.spec
        assert spec.iam_endpoint is not None  # the spec parser requires it for Password
        iam = spec.iam_endpoint
        values = await read_keys(
            self.secrets, self.namespace, spec.secret_name, PASSWORD_KEYS, PROJECT_KEYS
        )
        creds = IamCredentials(
            username=values["username"],
            password=values["password"],
            domain=values["domainName"],
            # Scope: the Secret's project if it names one, else the project being queried.
            project_id=values.get("projectId")
            or (None if "projectName" in values else spec.project_id),
            project_name=values.get("projectName"),
        )
        used.append(creds.password)
        key = creds.fingerprint(iam)

        async def login() -> CachedToken:
            now = self.tokens.clock()
            return await fetch_token(
                http, iam, creds, timeouts=self.timeouts, secret_label=self.secret_label, now=now
            )

        token = await self.tokens.get_or_fetch(key, login)
        used.append(token.value)
        value = header_value(token.value, "the token IAM issued")
        budget = BudgetKey(f"modelArts/user-{creds.identity(iam)}", self.calls_per_minute)
        return _Auth(budget, lambda: {"X-Auth-Token": value}, cache_key=key, token=token)

    def _unauthorized(self, resp: HttpResponse) -> DiscoveryError:
        code = error_code(resp)
        head = f"{resp.url} answered {resp.status}" + (f" ({code})" if code else "")
        if self.spec.auth_method == AUTH_TOKEN:
            hint = (
                f"the token in {self.secret_label} (key {self.spec.token_key}) was refused: "
                "tokens expire after 24 h; renew it, or let the operator log in to IAM"
            )
        elif self.spec.auth_method == AUTH_ACCESS_KEY:
            hint = (
                f"the AK/SK signature from {self.secret_label} was refused: check accessKey, "
                "secretKey and this machine's clock"
            )
        else:
            hint = (
                f"the IAM user in {self.secret_label} may lack ModelArts permissions on "
                f"project {self.spec.project_id}, or its token was refused again after a new login"
            )
        return DiscoveryError(Reason.UNAUTHORIZED, f"{head}; {hint}")


PROVIDER = register(
    ProviderKind(ModelArtsSpec.kind, parse_model_arts, ModelArtsProvider, ModelArtsSpec)
)
