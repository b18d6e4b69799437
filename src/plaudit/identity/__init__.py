"""Who is calling, proved by an OpenID Connect provider: bearer-token verification.

``OidcVerifier(OidcConfig(...)).verify(token)`` gives a ``VerifiedToken`` (a person or a
service, with tenant, roles and player read from configurable claims) or raises
``AuthenticationFailed``. The rules are in ``plaudit.identity.oidc``'s docstring.

Wiring, in outline: build one verifier in the composition root (``await verifier.load()``
at start-up checks the provider; ``await verifier.aclose()`` at shutdown), and in a FastAPI
dependency take the token after ``Bearer `` in the Authorization header and return
``await verifier.verify(token)``; map ``VerifiedToken.roles`` to scopes and check
``tenant_id`` there. ``IdentityProviderError`` (an ``AuthenticationFailed``) means the
provider could not be used, not that the token is bad.
"""

from plaudit.identity.keys import SUPPORTED_ALGORITHMS
from plaudit.identity.oidc import ClaimMapping, OidcConfig, OidcVerifier, TokenKind, VerifiedToken
from plaudit.identity.provider import IdentityProviderError

__all__ = [
    "SUPPORTED_ALGORITHMS",
    "ClaimMapping",
    "IdentityProviderError",
    "OidcConfig",
    "OidcVerifier",
    "TokenKind",
    "VerifiedToken",
]
