"""Sign-in throttling (relais_kit.throttle): a limit per account and one per client
address, refused before any password is checked, with a Retry-After."""

from __future__ import annotations

import pytest

from relais_kit.throttle import SignInThrottle, TooManyAttempts

HOME = "192.0.2.10"
ELSEWHERE = "198.51.100.7"


async def refused(throttle: SignInThrottle, account: str, address: str) -> TooManyAttempts:
    with pytest.raises(TooManyAttempts) as caught:
        await throttle.attempt(account, address)
    return caught.value


async def test_an_account_is_refused_past_its_limit_from_any_address() -> None:
    throttle = SignInThrottle(per_account="3 per minute", per_address="100 per minute")
    for address in (HOME, ELSEWHERE, "203.0.113.1"):
        await throttle.attempt("sophie@agen.fr", address)
    refusal = await refused(throttle, "sophie@agen.fr", "203.0.113.99")
    assert refusal.what == "account"
    assert 1 <= refusal.retry_after_s <= 60
    assert "account" in str(refusal) and "sophie" not in str(refusal)
    await throttle.attempt("marc@agen.fr", HOME)  # another account is not affected


async def test_an_account_is_the_same_whatever_its_case_and_spacing() -> None:
    throttle = SignInThrottle(per_account="2 per minute", per_address="100 per minute")
    await throttle.attempt("Sophie@Agen.fr", HOME)
    await throttle.attempt("  sophie@agen.fr ", HOME)
    assert (await refused(throttle, "SOPHIE@AGEN.FR", HOME)).what == "account"


async def test_an_address_is_refused_past_its_limit_whatever_the_account() -> None:
    throttle = SignInThrottle(per_account="100 per minute", per_address="4 per minute")
    for i in range(4):
        await throttle.attempt(f"guess-{i}@agen.fr", HOME)
    refusal = await refused(throttle, "guess-5@agen.fr", HOME)
    assert refusal.what == "address" and 1 <= refusal.retry_after_s <= 60
    await throttle.attempt("guess-5@agen.fr", ELSEWHERE)  # another address is not affected


async def test_a_success_clears_its_account_but_not_its_address() -> None:
    throttle = SignInThrottle(per_account="2 per minute", per_address="5 per minute")
    await throttle.attempt("sophie@agen.fr", HOME)
    await throttle.attempt("sophie@agen.fr", HOME)
    await throttle.succeeded("sophie@agen.fr")
    await throttle.attempt("sophie@agen.fr", HOME)  # the account starts afresh...
    await throttle.attempt("sophie@agen.fr", HOME)
    await throttle.attempt("marc@agen.fr", HOME)
    # ...the address does not: five attempts came from it.
    assert (await refused(throttle, "nina@agen.fr", HOME)).what == "address"


async def test_an_attempt_refused_for_its_account_is_not_counted_for_its_address() -> None:
    throttle = SignInThrottle(per_account="2 per minute", per_address="3 per minute")
    await throttle.attempt("sophie@agen.fr", HOME)
    await throttle.attempt("sophie@agen.fr", HOME)
    for _ in range(5):
        assert (await refused(throttle, "sophie@agen.fr", HOME)).what == "account"
    await throttle.attempt("marc@agen.fr", HOME)  # the third counted attempt from HOME
    assert (await refused(throttle, "nina@agen.fr", HOME)).what == "address"


async def test_an_attempt_refused_for_its_address_is_not_counted_for_its_account() -> None:
    throttle = SignInThrottle(per_account="3 per minute", per_address="2 per minute")
    await throttle.attempt("marc@agen.fr", HOME)
    await throttle.attempt("sophie@agen.fr", HOME)
    for _ in range(5):
        assert (await refused(throttle, "sophie@agen.fr", HOME)).what == "address"
    await throttle.attempt("sophie@agen.fr", ELSEWHERE)  # sophie's second counted attempt
    await throttle.attempt("sophie@agen.fr", ELSEWHERE)  # and third
    assert (await refused(throttle, "sophie@agen.fr", ELSEWHERE)).what == "account"


async def test_the_default_limits_are_ten_per_account_in_five_minutes() -> None:
    throttle = SignInThrottle()
    for _ in range(10):
        await throttle.attempt("sophie@agen.fr", HOME)
    refusal = await refused(throttle, "sophie@agen.fr", HOME)
    assert refusal.what == "account" and 1 <= refusal.retry_after_s <= 300
