"""Key rotation at the real provider: refetches are rare, shared, and enough.

Each test starts its own provider, since it rotates keys and counts the JWKS requests the
provider served.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from tests.identity.conftest import AUDIENCE, MakeVerifier, MovableClock
from tests.identity.forge import assert_refused, claims_for, forge
from tests.support.oidc_provider import OidcProvider, ProviderKey

pytestmark = [pytest.mark.anyio, pytest.mark.slow]  # slow: starts OIDC provider processes

A_MINUTE_AND_A_BIT = timedelta(seconds=61)


@pytest.fixture
def own_provider(tmp_path: Path) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path / "oidc") as started:
        yield started


@pytest.fixture
def own_kidless_provider(tmp_path: Path) -> Iterator[OidcProvider]:
    with OidcProvider(tmp_path / "oidc", kid_header=False) as started:
        yield started


async def test_an_unknown_kid_refetches_once_and_a_second_within_the_minute_does_not(
    own_provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    provider = own_provider
    verifier = make_verifier(provider)
    first = await provider.login(client_id=AUDIENCE, sub="alice")
    await verifier.verify(first.id_token)
    assert await provider.jwks_requests() == 1

    clock.advance(A_MINUTE_AND_A_BIT)
    await provider.rotate_key()
    second = await provider.login(client_id=AUDIENCE, sub="alice")
    assert (await verifier.verify(second.id_token)).subject == "alice"
    assert await provider.jwks_requests() == 2

    clock.advance(timedelta(seconds=50))
    await provider.rotate_key()
    third = await provider.login(client_id=AUDIENCE, sub="alice")
    await assert_refused(verifier, third.id_token, "does not publish")
    assert await provider.jwks_requests() == 2  # the minute since the last fetch is not over

    clock.advance(timedelta(seconds=11))
    assert (await verifier.verify(third.id_token)).subject == "alice"
    assert await provider.jwks_requests() == 3
    # The retired keys are gone from the JWKS, and so are their tokens.
    await assert_refused(verifier, first.id_token, "does not publish")


async def test_the_refetch_interval_is_configurable(
    own_provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    provider = own_provider
    verifier = make_verifier(provider, jwks_refetch_interval=timedelta(seconds=5))
    await verifier.verify((await provider.login(client_id=AUDIENCE, sub="alice")).id_token)
    await provider.rotate_key()
    rotated = await provider.login(client_id=AUDIENCE, sub="alice")

    clock.advance(timedelta(seconds=4))
    await assert_refused(verifier, rotated.id_token, "does not publish")
    clock.advance(timedelta(seconds=1))
    assert (await verifier.verify(rotated.id_token)).subject == "alice"
    assert await provider.jwks_requests() == 2


async def test_twenty_concurrent_verifications_with_a_new_kid_share_one_fetch(
    own_provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    provider = own_provider
    verifier = make_verifier(provider)
    await verifier.verify((await provider.login(client_id=AUDIENCE, sub="alice")).id_token)
    await provider.rotate_key()
    rotated = await provider.login(client_id=AUDIENCE, sub="alice")
    clock.advance(A_MINUTE_AND_A_BIT)

    verified = await asyncio.gather(*(verifier.verify(rotated.id_token) for _ in range(20)))

    # Every caller got the new key (none was turned away by the interval): they waited
    # for the one fetch that the first of them started.
    assert [token.subject for token in verified] == ["alice"] * 20
    assert await provider.jwks_requests() == 2


async def test_twenty_concurrent_first_verifications_share_one_discovery_and_one_fetch(
    own_provider: OidcProvider, make_verifier: MakeVerifier
) -> None:
    provider = own_provider
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    verifier = make_verifier(provider)

    verified = await asyncio.gather(*(verifier.verify(tokens.id_token) for _ in range(20)))

    assert len({token.subject for token in verified}) == 1
    assert await provider.jwks_requests() == 1


async def test_a_provider_without_kids_that_rotates_is_followed_after_the_interval(
    own_kidless_provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    provider = own_kidless_provider
    verifier = make_verifier(provider)
    await verifier.verify((await provider.login(client_id=AUDIENCE, sub="alice")).id_token)
    await provider.rotate_key()
    rotated = await provider.login(client_id=AUDIENCE, sub="alice")

    await assert_refused(verifier, rotated.id_token, "signature is invalid")
    assert await provider.jwks_requests() == 1

    clock.advance(A_MINUTE_AND_A_BIT)
    assert (await verifier.verify(rotated.id_token)).subject == "alice"
    assert await provider.jwks_requests() == 2


async def test_a_forged_token_without_kid_still_fails_after_the_refetch_it_may_cause(
    own_kidless_provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    provider = own_kidless_provider
    verifier = make_verifier(provider)
    await verifier.verify((await provider.login(client_id=AUDIENCE, sub="alice")).id_token)
    attacker = ProviderKey.generate()
    forged = forge(
        {"alg": "RS256", "typ": "JWT"}, claims_for(provider.issuer), attacker.private_key
    )

    for _ in range(3):
        clock.advance(A_MINUTE_AND_A_BIT)
        await assert_refused(verifier, forged, "signature is invalid")
        await assert_refused(verifier, forged, "signature is invalid")

    # One refetch per interval at most: three intervals, three refetches, plus the first load.
    assert await provider.jwks_requests() == 4


async def test_keys_older_than_their_maximum_age_are_refetched_on_next_use(
    own_provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    provider = own_provider
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    verifier = make_verifier(provider, jwks_max_age=timedelta(minutes=10))
    await verifier.verify(tokens.id_token)

    clock.advance(timedelta(minutes=9))
    await verifier.verify(tokens.id_token)
    assert await provider.jwks_requests() == 1
    clock.advance(timedelta(minutes=1))
    await verifier.verify(tokens.id_token)
    assert await provider.jwks_requests() == 2


async def test_a_provider_that_goes_down_leaves_the_keys_already_held_in_use(
    own_provider: OidcProvider, make_verifier: MakeVerifier, clock: MovableClock
) -> None:
    provider = own_provider
    tokens = await provider.login(client_id=AUDIENCE, sub="alice")
    verifier = make_verifier(provider, jwks_max_age=timedelta(minutes=10))
    await verifier.verify(tokens.id_token)

    provider.stop()
    clock.advance(timedelta(minutes=11))  # past max age: a refetch is tried, and fails

    assert (await verifier.verify(tokens.id_token)).subject == "alice"
