"""Dependencies: the container, the caller (Principal) and the scope each route needs."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

import anyio.to_thread
from fastapi import Depends, Request
from starlette.types import Scope as StarletteScope

from plaudit.api.tls import client_certificate
from plaudit.bootstrap import Container
from plaudit.domain.auth import Principal, Scope, looks_like_key
from plaudit.errors import AuthenticationFailed, NotFound, PermissionDenied, ServiceUnavailable
from plaudit.identity.provider import IdentityProviderError
from plaudit.services.audit import set_actor


def app_container(request: Request) -> Container:
    container: Container = request.app.state.container
    return container


async def container_of(request: Request) -> Container:
    # async on purpose: FastAPI runs a plain `def` dependency on a worker thread, and that
    # hop cost more than the rest of a leaderboard read.
    return app_container(request)


ContainerDep = Annotated[Container, Depends(container_of)]


def bearer_token(scope: StarletteScope) -> bytes | None:
    """The token of an ``Authorization: Bearer`` header, straight from the ASGI scope (for
    middleware, before any route: the rate limits, the hot reads); None without one."""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() or None if scheme.lower() == b"bearer" else None
    return None


async def authenticate(request: Request) -> Principal:
    """The caller: ``Authorization: Bearer <API key or token>``, else the verified client
    certificate of the connection (mutual TLS); cached for the request."""
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    header = request.headers.get("authorization")
    certificate = client_certificate(request.scope) if not header else None
    if certificate is not None:
        from_certificate = await anyio.to_thread.run_sync(
            app_container(request).tenancy.principal_of_certificate,
            certificate.common_name,
            certificate.organization,
            certificate.units,
        )
        request.state.principal = from_certificate
        return from_certificate
    if not header:
        raise AuthenticationFailed(
            "missing Authorization header; send 'Authorization: Bearer <API key>'"
        )
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationFailed("malformed Authorization header; expected 'Bearer <API key>'")
    container = app_container(request)
    tenancy = container.tenancy
    principal: Principal | None
    if container.oidc is not None and not looks_like_key(token):
        try:
            verified = await container.oidc.verify(token)
        except IdentityProviderError as exc:  # not the caller's fault: we cannot check now
            raise ServiceUnavailable(f"cannot verify the token now: {exc.detail}") from None
        principal = await anyio.to_thread.run_sync(tenancy.principal_of_token, verified)
    else:
        principal = tenancy.cached_principal(token)
        if principal is None:
            principal = await anyio.to_thread.run_sync(tenancy.authenticate, token)
    request.state.principal = principal
    return principal


def require(
    scope: Scope, players: Literal["self", "boards"] | None = None
) -> Callable[[Request], Awaitable[Principal]]:
    """The route needs ``scope``. With ``players``, a signed-in player may call it too:
    ``"boards"`` always, ``"self"`` for their own record only (the path parameter
    ``player``); another player's record is a 404 to them, as if it did not exist."""

    async def dependency(request: Request) -> Principal:
        principal = await authenticate(request)
        if not principal.allows(scope) and not await _player_may(request, principal, players):
            raise PermissionDenied(f"this API key lacks the {scope.value!r} scope")
        set_actor(f"{principal.kind}:{principal.subject}")  # what the audit log records
        return principal

    suffix = f"_or_player_{players}" if players else ""
    dependency.__name__ = f"require_{scope.name.lower()}{suffix}"
    dependency.required_scope = scope  # type: ignore[attr-defined]
    dependency.player_access = players  # type: ignore[attr-defined]
    return dependency


async def _player_may(
    request: Request, principal: Principal, players: Literal["self", "boards"] | None
) -> bool:
    if players is None or not principal.allows(Scope.PLAYER) or principal.player_id is None:
        return False
    ref = request.path_params.get("player", "") if players == "self" else None
    if ref is None or ref == principal.player_id:
        return True
    found = await anyio.to_thread.run_sync(
        app_container(request).players.player_id, principal.tenant_id, ref
    )
    if found != principal.player_id:
        raise NotFound(f"no player {ref!r}")
    return True


Reader = Annotated[Principal, Depends(require(Scope.READ))]
PlayerSelf = Annotated[Principal, Depends(require(Scope.READ, players="self"))]
BoardReader = Annotated[Principal, Depends(require(Scope.READ, players="boards"))]
EventWriter = Annotated[Principal, Depends(require(Scope.EVENTS_WRITE))]
PlayerWriter = Annotated[Principal, Depends(require(Scope.PLAYERS_WRITE))]
Editor = Annotated[Principal, Depends(require(Scope.RULES_WRITE))]
Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]
KeyAdmin = Annotated[Principal, Depends(require(Scope.KEYS_WRITE))]
Owner = Annotated[Principal, Depends(require(Scope.TENANTS_WRITE))]
