"""API keys of the caller's tenant (admin)."""

from __future__ import annotations

import anyio.to_thread
from fastapi import APIRouter

from plaudit.api.deps import ContainerDep, KeyAdmin
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import KeyCreate, KeyCreated, KeyOut
from plaudit.domain.auth import Scope, parse_scopes, scopes_of_roles
from plaudit.errors import FieldError, InvalidInput, PermissionDenied

router = APIRouter(prefix="/v1/keys", tags=["keys"], route_class=IdempotentRoute)


@router.get("", response_model=list[KeyOut], summary="API keys (secrets are never shown again)")
async def list_keys(principal: KeyAdmin, container: ContainerDep) -> list[KeyOut]:
    records = await anyio.to_thread.run_sync(container.tenancy.list_keys, principal.tenant_id)
    return [KeyOut.of(r) for r in records]


@router.post("", response_model=KeyCreated, status_code=201, summary="Create an API key")
async def create_key(body: KeyCreate, principal: KeyAdmin, container: ContainerDep) -> KeyCreated:
    try:
        scopes = scopes_of_roles(body.roles)
    except ValueError as exc:
        raise InvalidInput(str(exc), [FieldError("roles", str(exc))]) from None
    if body.scopes or not scopes:
        try:
            scopes |= parse_scopes(body.scopes)
        except ValueError as exc:
            raise InvalidInput(str(exc), [FieldError("scopes", str(exc))]) from None
    if Scope.PLAYER in scopes:
        problem = "the player role comes with a player's sign-in, never with an API key"
        raise InvalidInput(problem, [FieldError("roles", problem)])
    beyond = sorted(s.value for s in scopes if not principal.allows(s))
    if beyond:
        raise PermissionDenied(f"a key cannot get scopes its creator lacks: {', '.join(beyond)}")
    created = await anyio.to_thread.run_sync(
        container.tenancy.create_key, principal.tenant_id, body.name, scopes
    )
    return KeyCreated(**KeyOut.of(created.record).model_dump(), key=created.secret)


@router.delete("/{key_id}", response_model=KeyOut, summary="Revoke an API key, at once")
async def revoke_key(key_id: str, principal: KeyAdmin, container: ContainerDep) -> KeyOut:
    record = await anyio.to_thread.run_sync(
        container.tenancy.revoke_key, principal.tenant_id, key_id
    )
    return KeyOut.of(record)
