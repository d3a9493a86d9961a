"""Pure state of the emulated Huawei Cloud IAM: users, access keys, issued tokens, logins.

Config (the ``iam`` key of the emulator config file, or ``PUT /admin/iam/users/{name}``)::

    iam:
      token_ttl: 86400                     # seconds; the answer's expires_at follows it
      users:
        - {name: alice, password: pw, domain: acme, projects: [{id: p1, name: cn-north-4}]}
      access_keys:
        - {access_key: AK1, secret_key: SK1, user: alice}

Thread-safe, like EmulatorState: the server thread issues tokens while tests look on.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from .errors import ConfigError

DEFAULT_TOKEN_TTL = 24 * 3600.0


@dataclass(frozen=True)
class User:
    name: str
    password: str = field(repr=False)
    domain: str
    projects: tuple[tuple[str, str], ...] = ()  # (id, name); empty: any project id goes

    def project(self, scope: Mapping[str, Any]) -> str | None:
        """The project id a login scope names, or None if this user may not use it."""
        wanted_id, wanted_name = scope.get("id"), scope.get("name")
        if not self.projects:
            return str(wanted_id or wanted_name or "") or None
        for pid, pname in self.projects:
            if wanted_id == pid or (wanted_id is None and wanted_name == pname):
                return pid
        return None

    def to_json(self) -> dict[str, Any]:  # never the password
        projects = [{"id": pid, "name": pname} for pid, pname in self.projects]
        return {"name": self.name, "domain": self.domain, "projects": projects}


@dataclass(frozen=True)
class Token:
    user: str
    project: str
    expires_at: float
    revoked: bool = False

    def valid(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


def parse_user(name: str, spec: Any) -> User:
    if not isinstance(spec, Mapping):
        raise ConfigError(f"iam user {name!r}: expected an object")
    password, domain = spec.get("password"), spec.get("domain")
    if not isinstance(password, str) or not isinstance(domain, str) or not name:
        raise ConfigError(f"iam user {name!r}: 'password' and 'domain' must be strings")
    projects = []
    for item in spec.get("projects") or []:
        if not isinstance(item, Mapping) or not isinstance(item.get("id"), str):
            raise ConfigError(f"iam user {name!r}: projects are objects with an 'id'")
        projects.append((item["id"], str(item.get("name") or item["id"])))
    return User(name=name, password=password, domain=domain, projects=tuple(projects))


class IamState:
    def __init__(self, *, token_ttl: float = DEFAULT_TOKEN_TTL) -> None:
        self._lock = threading.Lock()
        self.token_ttl = token_ttl
        self._users: dict[str, User] = {}
        self._keys: dict[str, tuple[str, str]] = {}  # access key -> (secret key, user)
        self._tokens: dict[str, Token] = {}
        self.logins: Counter[str] = Counter()
        self.failed_logins: Counter[str] = Counter()

    def configure(self, data: Any) -> None:
        """Load the ``iam`` section of a config document (None: nothing to do)."""
        if data is None:
            return
        if not isinstance(data, Mapping):
            raise ConfigError("'iam' must be an object")
        ttl = data.get("token_ttl", DEFAULT_TOKEN_TTL)
        if isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ConfigError("iam.token_ttl must be a positive number of seconds")
        self.token_ttl = float(ttl)
        for spec in data.get("users") or []:
            name = spec.get("name") if isinstance(spec, Mapping) else None
            self.put_user(parse_user(str(name or ""), spec))
        for key in data.get("access_keys") or []:
            if not isinstance(key, Mapping) or not all(
                isinstance(key.get(k), str) for k in ("access_key", "secret_key", "user")
            ):
                raise ConfigError("iam.access_keys entries need access_key, secret_key, user")
            self._keys[key["access_key"]] = (key["secret_key"], key["user"])

    def put_user(self, user: User, *, keep_tokens: bool = False) -> None:
        """Create or replace a user; a changed password revokes its tokens, as in IAM."""
        with self._lock:
            old = self._users.get(user.name)
            self._users[user.name] = user
            if old is not None and old.password != user.password and not keep_tokens:
                self._revoke_locked(user.name)

    def users(self) -> list[User]:
        with self._lock:
            return sorted(self._users.values(), key=lambda u: u.name)

    def login(self, body: Any) -> tuple[str, Token] | str:
        """A token for a Keystone v3 password request, or the reason it is refused."""
        try:
            ident = body["auth"]["identity"]
            user_doc = ident["password"]["user"]
            name, password = user_doc["name"], user_doc["password"]
            domain = user_doc["domain"]["name"]
            scope = body["auth"]["scope"]["project"]
        except (KeyError, TypeError):
            return "malformed"
        with self._lock:
            user = self._users.get(name)
            if user is None or user.password != password or user.domain != domain:
                self.failed_logins[str(name)] += 1
                return "credentials"
            project = user.project(scope) if isinstance(scope, Mapping) else None
            if project is None:
                self.failed_logins[name] += 1
                return "project"
            value = "MIIE" + secrets.token_urlsafe(48)  # looks like a PKI token, is random
            token = Token(user=name, project=project, expires_at=time.time() + self.token_ttl)
            self._tokens[value] = token
            self.logins[name] += 1
            return value, token

    def token(self, value: str) -> Token | None:
        with self._lock:
            return self._tokens.get(value)

    def access_key(self, access_key: str) -> tuple[str, str] | None:
        with self._lock:
            return self._keys.get(access_key)

    def revoke(self, user: str | None = None) -> int:
        """Invalidate the tokens of `user` (None: everybody's); returns how many."""
        with self._lock:
            return self._revoke_locked(user)

    def _revoke_locked(self, user: str | None) -> int:
        hits = [v for v, t in self._tokens.items() if user is None or t.user == user]
        for value in hits:
            self._tokens[value] = replace(self._tokens[value], revoked=True)
        return len(hits)

    def to_json(self) -> dict[str, Any]:
        now = time.time()
        with self._lock:
            tokens = list(self._tokens.values())
            return {
                "users": [u.to_json() for u in sorted(self._users.values(), key=lambda u: u.name)],
                "token_ttl": self.token_ttl,
                "tokens": {
                    "valid": sum(t.valid(now) for t in tokens),
                    "invalid": sum(not t.valid(now) for t in tokens),
                },
                "logins": dict(self.logins),
                "failed_logins": dict(self.failed_logins),
            }
