"""Tenants, for the platform's owner: every other tenant's data stays invisible to them
here (only names and dates); each new tenant gets a first owner key."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import anyio.to_thread
from fastapi import APIRouter
from pydantic import BaseModel, Field, StringConstraints

from plaudit.api.deps import ContainerDep, Owner
from plaudit.api.idempotency import IdempotentRoute
from plaudit.api.schemas import Strict
from plaudit.bootstrap import Container
from plaudit.domain.auth import Principal
from plaudit.errors import PermissionDenied
from plaudit.store.ports import Tenant

router = APIRouter(prefix="/v1/tenants", tags=["tenants"], route_class=IdempotentRoute)

TenantId = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class TenantCreate(Strict):
    id: TenantId
    name: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TenantOut(BaseModel):
    id: str
    name: str
    created_at: datetime

    @classmethod
    def of(cls, t: Tenant) -> TenantOut:
        return cls(id=t.id, name=t.name, created_at=t.created_at)


class TenantCreated(TenantOut):
    owner_key: str = Field(description="The new tenant's first owner key. Shown once.")


def _platform(principal: Principal, container: Container) -> str:
    """Only owners of the platform's own tenant manage tenants; a tenant's owner owns that
    tenant, not the others."""
    if principal.tenant_id != container.default_tenant:
        raise PermissionDenied("only owners of the platform tenant manage tenants")
    return principal.tenant_id


@router.get("", response_model=list[TenantOut], summary="Tenants (the platform owner's)")
async def list_tenants(principal: Owner, container: ContainerDep) -> list[TenantOut]:
    _platform(principal, container)
    found = await anyio.to_thread.run_sync(container.tenancy.tenants)
    return [TenantOut.of(t) for t in found]


@router.post(
    "",
    response_model=TenantCreated,
    status_code=201,
    summary="Create a tenant, with a first owner key",
)
async def create_tenant(
    body: TenantCreate, principal: Owner, container: ContainerDep
) -> TenantCreated:
    platform = _platform(principal, container)
    tenant, key = await anyio.to_thread.run_sync(
        container.tenancy.create_tenant, platform, body.id, body.name
    )
    return TenantCreated(**TenantOut.of(tenant).model_dump(), owner_key=key.secret)


@router.get("/{tenant_id}", response_model=TenantOut)
async def get_tenant(tenant_id: str, principal: Owner, container: ContainerDep) -> TenantOut:
    _platform(principal, container)
    return TenantOut.of(await anyio.to_thread.run_sync(container.tenancy.tenant, tenant_id))
