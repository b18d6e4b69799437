"""Our webhook signatures verify with the Standard Webhooks libraries, and theirs with ours.

svix 2.9.1's ``Webhook`` delegates to ``standardwebhooks``' one, so the two packages are one
implementation under two names; the specification's published test vector is the check that
depends on neither of them, nor on us.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from plaudit.webhooks.signing import (
    SignatureMismatch,
    headers,
    new_secret,
    signature,
    verify,
)

# The Standard Webhooks specification's (and Svix's) published test vector.
SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

MSG_ID = "msg_2bXk9Qw7"
BODY = '{"type":"badge.awarded","data":{"player":"Zoë","badge":"first-steps"}}'.encode()

Verifier = Callable[[str, Mapping[str, str], bytes], None]


def verify_with_standardwebhooks(secret: str, hdrs: Mapping[str, str], body: bytes) -> None:
    StandardWebhook(secret).verify(body, dict(hdrs), json_parse=False)


def verify_with_svix(secret: str, hdrs: Mapping[str, str], body: bytes) -> None:
    SvixWebhook(secret).verify(body, dict(hdrs))


def verify_with_ours(secret: str, hdrs: Mapping[str, str], body: bytes) -> None:
    # The packages read the wall clock, so ours is given it too.
    verify(secret, hdrs, body, now=int(time.time()))


ALL_VERIFIERS = [
    pytest.param(verify_with_standardwebhooks, WebhookVerificationError, id="standardwebhooks"),
    pytest.param(verify_with_svix, WebhookVerificationError, id="svix"),
    pytest.param(verify_with_ours, SignatureMismatch, id="plaudit"),
]
PACKAGE_VERIFIERS = ALL_VERIFIERS[:2]


def test_signature_reproduces_the_specifications_test_vector() -> None:
    assert signature(SPEC_SECRET, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_a_secret_without_the_whsec_prefix_is_read_as_the_same_base64_key() -> None:
    bare = SPEC_SECRET.removeprefix("whsec_")
    assert signature(bare, SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY) == SPEC_SIGNATURE


def test_our_verify_accepts_the_specifications_test_vector_and_rejects_a_changed_id() -> None:
    hdrs = {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }
    verify(SPEC_SECRET, hdrs, SPEC_BODY, now=SPEC_TIMESTAMP + 10)
    with pytest.raises(SignatureMismatch, match="no v1 signature"):
        verify(SPEC_SECRET, {**hdrs, "webhook-id": "msg_other"}, SPEC_BODY, SPEC_TIMESTAMP)


def test_new_secrets_are_whsec_and_32_random_bytes_the_packages_accept() -> None:
    first, second = new_secret(), new_secret()
    assert first != second
    for secret in (first, second):
        assert secret.startswith("whsec_")
        assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    hdrs = headers([first], MSG_ID, int(time.time()), BODY)
    verify_with_standardwebhooks(first, hdrs, BODY)
    verify_with_svix(first, hdrs, BODY)


def test_headers_are_the_three_standard_webhooks_headers() -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, 1_700_000_000, BODY)
    assert hdrs == {
        "webhook-id": MSG_ID,
        "webhook-timestamp": "1700000000",
        "webhook-signature": signature(secret, MSG_ID, 1_700_000_000, BODY),
    }


@pytest.mark.parametrize(("verifier", "error"), ALL_VERIFIERS)
def test_our_signed_delivery_verifies(verifier: Verifier, error: type[Exception]) -> None:
    secret = new_secret()
    verifier(secret, headers([secret], MSG_ID, int(time.time()), BODY), BODY)


@pytest.mark.parametrize(("verifier", "error"), ALL_VERIFIERS)
def test_during_a_rotation_both_the_new_and_the_old_secret_verify(
    verifier: Verifier, error: type[Exception]
) -> None:
    new, old = new_secret(), new_secret()
    now = int(time.time())
    hdrs = headers([new, old], MSG_ID, now, BODY)
    assert hdrs["webhook-signature"] == (
        f"{signature(new, MSG_ID, now, BODY)} {signature(old, MSG_ID, now, BODY)}"
    )
    verifier(new, hdrs, BODY)
    verifier(old, hdrs, BODY)
    with pytest.raises(error):
        verifier(new_secret(), hdrs, BODY)


@pytest.mark.parametrize(("verifier", "error"), ALL_VERIFIERS)
def test_a_tampered_body_fails(verifier: Verifier, error: type[Exception]) -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, int(time.time()), BODY)
    tampered = BODY.replace(b"first-steps", b"grand-master")
    with pytest.raises(error):
        verifier(secret, hdrs, tampered)


@pytest.mark.parametrize(("verifier", "error"), ALL_VERIFIERS)
def test_a_wrong_secret_fails(verifier: Verifier, error: type[Exception]) -> None:
    hdrs = headers([new_secret()], MSG_ID, int(time.time()), BODY)
    with pytest.raises(error):
        verifier(new_secret(), hdrs, BODY)


@pytest.mark.parametrize(("verifier", "error"), ALL_VERIFIERS)
@pytest.mark.parametrize("skew", [-600, 600], ids=["stale", "future"])
def test_a_timestamp_outside_five_minutes_fails(
    verifier: Verifier, error: type[Exception], skew: int
) -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, int(time.time()) + skew, BODY)
    with pytest.raises(error):
        verifier(secret, hdrs, BODY)


@pytest.mark.parametrize(("verifier", "error"), ALL_VERIFIERS)
def test_a_signature_header_altered_to_another_message_id_fails(
    verifier: Verifier, error: type[Exception]
) -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, int(time.time()), BODY)
    with pytest.raises(error):
        verifier(secret, {**hdrs, "webhook-id": "msg_replayed"}, BODY)


@pytest.mark.parametrize("sign_with", [StandardWebhook, SvixWebhook], ids=["standard", "svix"])
def test_our_verify_accepts_the_packages_own_signatures(
    sign_with: type[StandardWebhook] | type[SvixWebhook],
) -> None:
    secret = new_secret()
    now = int(time.time())
    theirs = sign_with(secret).sign(MSG_ID, datetime.fromtimestamp(now, UTC), BODY.decode())
    assert theirs == signature(secret, MSG_ID, now, BODY)
    hdrs = {"webhook-id": MSG_ID, "webhook-timestamp": str(now), "webhook-signature": theirs}
    verify(secret, hdrs, BODY, now=now)
    with pytest.raises(SignatureMismatch):
        verify(new_secret(), hdrs, BODY, now=now)


def test_verify_reads_header_names_case_insensitively() -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, 1_700_000_000, BODY)
    shouted = {name.title(): value for name, value in hdrs.items()}
    assert "Webhook-Signature" in shouted
    verify(secret, shouted, BODY, now=1_700_000_000)


@pytest.mark.parametrize("dropped", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_verify_names_a_missing_header(dropped: str) -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, 1_700_000_000, BODY)
    del hdrs[dropped]
    with pytest.raises(SignatureMismatch, match=f"missing header: {dropped}$"):
        verify(secret, hdrs, BODY, now=1_700_000_000)


def test_verify_rejects_a_timestamp_that_is_not_whole_seconds() -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, 1_700_000_000, BODY)
    with pytest.raises(SignatureMismatch, match="not a whole number"):
        verify(secret, {**hdrs, "webhook-timestamp": "1700000000.5"}, BODY, now=1_700_000_000)


def test_the_tolerance_is_inclusive_and_says_how_far_off_the_timestamp_is() -> None:
    secret = new_secret()
    signed_at = 1_700_000_000
    hdrs = headers([secret], MSG_ID, signed_at, BODY)
    verify(secret, hdrs, BODY, now=signed_at + 300)
    verify(secret, hdrs, BODY, now=signed_at - 300)
    with pytest.raises(SignatureMismatch, match="301 s old, outside the 300 s tolerance"):
        verify(secret, hdrs, BODY, now=signed_at + 301)
    with pytest.raises(SignatureMismatch, match="301 s in the future"):
        verify(secret, hdrs, BODY, now=signed_at - 301)
    verify(secret, hdrs, BODY, now=signed_at + 3600, tolerance=3600)


def test_verify_ignores_signatures_of_other_versions() -> None:
    secret = new_secret()
    hdrs = headers([secret], MSG_ID, 1_700_000_000, BODY)
    other_version = hdrs["webhook-signature"].replace("v1,", "v1a,")
    with pytest.raises(SignatureMismatch):
        verify(secret, {**hdrs, "webhook-signature": other_version}, BODY, now=1_700_000_000)


@pytest.mark.parametrize("secret", ["whsec_not base64!", "whsec_abcde", "whsec_ünïcode"])
def test_an_undecodable_secret_is_a_value_error_that_does_not_echo_it(secret: str) -> None:
    with pytest.raises(ValueError, match="webhook secret is not valid base64") as raised:
        signature(secret, MSG_ID, 1_700_000_000, BODY)
    assert not isinstance(raised.value, SignatureMismatch)
    assert secret.removeprefix("whsec_") not in str(raised.value)


def test_an_empty_secret_is_refused_because_anyone_could_sign_with_it() -> None:
    with pytest.raises(ValueError, match="webhook secret is empty"):
        signature("whsec_", MSG_ID, 1_700_000_000, BODY)


def test_signing_needs_at_least_one_secret_and_not_a_bare_string() -> None:
    with pytest.raises(ValueError, match="at least one webhook secret"):
        headers([], MSG_ID, 1_700_000_000, BODY)
    with pytest.raises(TypeError, match="not a single string"):
        headers(new_secret(), MSG_ID, 1_700_000_000, BODY)
