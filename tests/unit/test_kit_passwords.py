"""Password checks (relais_kit.passwords): argon2id, on worker threads rather than the
event loop that also serves requests, consumers and the outbox relay."""

from __future__ import annotations

import threading

import pytest
from argon2 import PasswordHasher

from relais_kit import passwords


@pytest.fixture(scope="module")
def stored() -> str:
    return passwords.hash_now("correct horse battery staple")


async def test_the_right_password_matches_and_a_wrong_one_does_not(stored: str) -> None:
    assert stored.startswith("$argon2id$")
    assert await passwords.verify(stored, "correct horse battery staple") is True
    assert await passwords.verify(stored, "correct horse battery stapl") is False
    assert await passwords.verify(stored, "") is False


async def test_an_unknown_account_never_matches_not_even_the_decoy_password() -> None:
    assert await passwords.verify(None, "demo") is False
    assert await passwords.verify(None, "relais: no such account") is False


async def test_a_damaged_hash_matches_nothing() -> None:
    assert await passwords.verify("$argon2id$v=19$m=65536,t=3,p=4$garbage", "demo") is False
    assert await passwords.verify("plain text, not a hash", "plain text, not a hash") is False


async def test_a_hash_made_on_the_workers_verifies(stored: str) -> None:
    fresh = await passwords.hash_password("correct horse battery staple")
    assert fresh != stored, "salted"
    assert await passwords.verify(fresh, "correct horse battery staple") is True


class RecordingHasher:
    """The real hasher, noting the thread each check runs on."""

    def __init__(self, real: PasswordHasher) -> None:
        self.real = real
        self.ran_on: list[str] = []

    def verify(self, hash_: str, password: str) -> bool:
        self.ran_on.append(threading.current_thread().name)
        return self.real.verify(hash_, password)

    def hash(self, password: str) -> str:
        self.ran_on.append(threading.current_thread().name)
        return self.real.hash(password)


async def test_checks_run_on_the_argon2_workers_not_on_the_event_loop(monkeypatch: pytest.MonkeyPatch,
                                                                      stored: str) -> None:
    passwords._unknown_account_hash()  # made once, before: not what this test watches
    recording = RecordingHasher(passwords._hasher)
    monkeypatch.setattr(passwords, "_hasher", recording)
    await passwords.verify(stored, "correct horse battery staple")
    await passwords.verify(stored, "wrong")
    await passwords.verify(None, "wrong")  # an unknown account costs the same check
    await passwords.hash_password("another")
    assert len(recording.ran_on) == 4
    assert all(name.startswith("argon2") for name in recording.ran_on), recording.ran_on
    assert threading.current_thread().name not in recording.ran_on
