"""Tenants and API keys: who may call, for which tenant, with which scopes."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from plaudit.domain.auth import (
    ROLES,
    Principal,
    Role,
    Scope,
    generate_key,
    hash_key,
    looks_like_key,
    scopes_of_known_roles,
)
from plaudit.domain.clock import Clock
from plaudit.domain.ids import new_id
from plaudit.errors import AuthenticationFailed, Conflict, FieldError, InvalidInput, NotFound
from plaudit.identity.oidc import VerifiedToken
from plaudit.services import audit
from plaudit.store.ports import ApiKeyRecord, Database, Tenant


@dataclass(frozen=True, slots=True)
class CreatedKey:
    record: ApiKeyRecord
    secret: str  # shown once, never stored


# How long a process trusts a key it has checked: a revocation made through another process
# takes effect within this time (at once in the process that made it).
KEY_CACHE_TTL = 5.0
_KEY_CACHE_MAX = 10_000


class TenancyService:
    def __init__(self, db: Database, clock: Clock) -> None:
        # key hash -> (checked at, monotonic; the principal): a key is checked against the
        # database once per TTL, not on every request (that read was a tenth of a request).
        self._keys: dict[str, tuple[float, Principal]] = {}
        self.db = db
        self.clock = clock

    def ensure_tenant(self, tenant_id: str, name: str | None = None) -> tuple[Tenant, bool]:
        """Get the tenant, creating it if needed; the flag says whether it was created."""
        with self.db.write() as uow:
            existing = uow.tenants.get(tenant_id)
            if existing is not None:
                return existing, False
            tenant = Tenant(tenant_id, name or tenant_id, self.clock())
            uow.tenants.add(tenant)
            uow.commit()
            return tenant, True

    def tenants(self) -> list[Tenant]:
        with self.db.read() as uow:
            return uow.tenants.all()

    def tenant(self, tenant_id: str) -> Tenant:
        with self.db.read() as uow:
            found = uow.tenants.get(tenant_id)
        if found is None:
            raise NotFound(f"no tenant {tenant_id!r}")
        return found

    def create_tenant(self, platform: str, tenant_id: str, name: str) -> tuple[Tenant, CreatedKey]:
        """A new tenant with a first owner key (its secret shown once), recorded in the
        platform tenant's audit log."""
        now = self.clock()
        tenant = Tenant(tenant_id, name, now)
        with self.db.write() as uow:
            if uow.tenants.get(tenant_id) is not None:
                raise Conflict(f"tenant {tenant_id!r} already exists")
            uow.tenants.add(tenant)
            audit.record(
                uow, platform, "tenant.create", ("tenant", tenant_id), now, after={"name": name}
            )
            uow.commit()
        return tenant, self.create_key(tenant_id, "first owner key", ROLES[Role.OWNER])

    def create_key(self, tenant_id: str, name: str, scopes: frozenset[Scope]) -> CreatedKey:
        if not name.strip() or len(name) > 200:
            raise InvalidInput(
                "key name is empty or too long", [FieldError("name", "1 to 200 characters")]
            )
        material = generate_key()
        record = ApiKeyRecord(
            id=new_id("key"),
            tenant_id=tenant_id,
            name=name.strip(),
            display_prefix=material.display_prefix,
            scopes=scopes,
            created_at=self.clock(),
            revoked_at=None,
        )
        with self.db.write() as uow:
            if uow.tenants.get(tenant_id) is None:
                raise NotFound(f"tenant {tenant_id!r} does not exist")
            uow.keys.add(record, material.hash)
            audit.record(
                uow,
                tenant_id,
                "key.create",
                ("key", record.id),
                record.created_at,
                after={"name": record.name, "scopes": sorted(record.scopes)},
            )
            uow.commit()
        return CreatedKey(record, material.secret)

    def ensure_first_admin_key(self, tenant_id: str) -> CreatedKey | None:
        """Create an owner key when the tenant has no usable key (first start)."""
        with self.db.read() as uow:
            if uow.keys.count_active(tenant_id) > 0:
                return None
        return self.create_key(tenant_id, "first admin key", ROLES[Role.OWNER])

    def list_keys(self, tenant_id: str | None) -> list[ApiKeyRecord]:
        with self.db.read() as uow:
            return uow.keys.all_of(tenant_id)

    def revoke_key(self, tenant_id: str | None, key_id: str) -> ApiKeyRecord:
        with self.db.write() as uow:
            record = self._find_key(uow.keys.all_of(tenant_id), key_id)
            if record.revoked_at is not None:
                return record
            now = self.clock()
            uow.keys.revoke(record.tenant_id, record.id, now)
            audit.record(
                uow,
                record.tenant_id,
                "key.revoke",
                ("key", record.id),
                now,
                before={"revoked_at": None},
                after={"revoked_at": now},
            )
            uow.commit()
        self._keys.clear()  # this process forgets every checked key at once
        return replace(record, revoked_at=now)

    @staticmethod
    def _find_key(records: list[ApiKeyRecord], key_id: str) -> ApiKeyRecord:
        for record in records:
            if key_id in (record.id, record.display_prefix):
                return record
        raise NotFound(f"no API key {key_id!r}")

    def principal_of_token(self, token: VerifiedToken) -> Principal:
        """The principal a verified identity-provider token stands for: its tenant (which
        must exist), the scopes of its known roles, and for a player, the player it names
        (which must exist in that tenant)."""
        if token.tenant_id is None:
            raise AuthenticationFailed("the token names no tenant")
        scopes = scopes_of_known_roles(token.roles)
        player_id = None
        with self.db.read() as uow:
            if uow.tenants.get(token.tenant_id) is None:
                raise AuthenticationFailed(f"the token's tenant {token.tenant_id!r} is unknown")
            ref = token.player_ref
            if Scope.PLAYER in scopes and ref is not None:
                if ref.player_id is not None:
                    found = uow.players.get(token.tenant_id, ref.player_id)
                    player_id = found.id if found else None
                elif ref.identity is not None:
                    resolved = uow.players.resolve(token.tenant_id, [ref.identity])
                    player_id = resolved.get(ref.identity)
        if Scope.PLAYER in scopes and player_id is None:
            raise AuthenticationFailed("the token's player is unknown in its tenant")
        kind = "oidc-service" if token.kind == "service" else "oidc"
        return Principal(token.tenant_id, token.subject, scopes, kind, player_id=player_id)

    def principal_of_certificate(
        self, common_name: str, organization: str | None, units: tuple[str, ...]
    ) -> Principal:
        """The principal of a client certificate the TLS handshake verified: O names the
        tenant (which must exist), each OU a role (never player), CN the service."""
        if not organization:
            raise AuthenticationFailed("the client certificate names no tenant (subject O)")
        if Role.PLAYER.value in units:
            raise AuthenticationFailed("a client certificate cannot carry the player role")
        scopes = scopes_of_known_roles(units)
        with self.db.read() as uow:
            if uow.tenants.get(organization) is None:
                raise AuthenticationFailed(
                    f"the client certificate's tenant {organization!r} is unknown"
                )
        return Principal(organization, common_name, scopes, "mtls")

    def cached_principal(self, secret: str) -> Principal | None:
        """The principal of a key checked less than the TTL ago; no I/O."""
        found = self._keys.get(hash_key(secret)) if looks_like_key(secret) else None
        if found is None or time.monotonic() - found[0] >= KEY_CACHE_TTL:
            return None
        return found[1]

    def authenticate(self, secret: str) -> Principal:
        if not looks_like_key(secret):
            raise AuthenticationFailed("the bearer token is not a Plaudit API key")
        digest = hash_key(secret)
        with self.db.read() as uow:
            record = uow.keys.find_by_hash(digest)
        if record is None:
            raise AuthenticationFailed("unknown API key")
        if record.revoked_at is not None:
            raise AuthenticationFailed("this API key has been revoked")
        principal = Principal(tenant_id=record.tenant_id, subject=record.id, scopes=record.scopes)
        if len(self._keys) >= _KEY_CACHE_MAX:
            self._keys.clear()
        self._keys[digest] = (time.monotonic(), principal)
        return principal
