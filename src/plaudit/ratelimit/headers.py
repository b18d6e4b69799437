"""The response headers of rate-limit decisions: ``RateLimit-Policy`` and ``RateLimit`` as in
draft-ietf-httpapi-ratelimit-headers-11 (May 2026), and ``Retry-After`` (RFC 9110) on refusal.

Both fields are structured-field Lists of Items: the policy's name as a String, then
parameters::

    RateLimit-Policy: "600/min";q=600;w=60      q: the bucket's size; w: seconds to fill it
    RateLimit: "600/min";r=12;t=5               r: whole tokens left; t: seconds, see below

A token bucket has no fixed window; these values never promise more than the bucket gives:

* ``w`` is the time an empty bucket takes to fill, rounded up: ``q`` per ``w`` never
  overstates the rate.
* ``t`` on an allowed take is the time until the bucket is full again: spending no more than
  ``r`` within ``t`` is never refused. On a refused take it is the ``Retry-After`` value,
  since the draft asks that ``Retry-After`` not end before the effective window does.
* ``Retry-After`` is the seconds until the cost is available, rounded up (at least 1); it is
  left out when no wait helps (a cost above the burst). With several refusals, the longest.
"""

from __future__ import annotations

import math

from plaudit.ratelimit.ports import Decision, Limit

# Float noise (3600.0000000000005 s for 1000/h) must not round a whole second up to the next.
_NOISE = 1e-9


def policy_item(limit: Limit) -> str:
    """One ``RateLimit-Policy`` member: ``"name";q=<burst>;w=<seconds to fill>``."""
    return f"{_sf_string(limit.name)};q={limit.burst};w={max(1, _seconds_up(limit.window))}"


def limit_item(decision: Decision) -> str:
    """One ``RateLimit`` member: ``"name";r=<tokens left>;t=<seconds>``."""
    wait = retry_after_seconds(decision)
    window = _seconds_up(decision.reset_after) if wait is None else wait
    return f"{_sf_string(decision.limit.name)};r={decision.remaining};t={window}"


def retry_after_seconds(decision: Decision) -> int | None:
    """Whole seconds to wait before the same take can succeed; None if allowed or never."""
    if decision.allowed or math.isinf(decision.retry_after):
        return None
    return max(1, _seconds_up(decision.retry_after))


def rate_limit_headers(*decisions: Decision) -> dict[str, str]:
    """The headers for a response that went through ``decisions`` (one per limit applied)."""
    if not decisions:
        return {}
    headers = {
        "RateLimit-Policy": ", ".join(policy_item(d.limit) for d in decisions),
        "RateLimit": ", ".join(limit_item(d) for d in decisions),
    }
    waits = [wait for d in decisions if (wait := retry_after_seconds(d)) is not None]
    if waits:
        headers["Retry-After"] = str(max(waits))
    return headers


def _seconds_up(seconds: float) -> int:
    return max(0, math.ceil(seconds - _NOISE * max(1.0, seconds)))


def _sf_string(text: str) -> str:
    """A structured-field String (RFC 9651 §3.3.3); Limit keeps names to printable ASCII."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
