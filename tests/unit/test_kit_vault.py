"""Personal data sealed at rest (relais_kit.vault) and its keys (relais_kit.datakeys):
values bound to their row and column, tampering refused, keys rotated on disk taken up
by a running process, key files checked and created safely."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
from pathlib import Path

import pytest

from relais_kit import datakeys
from relais_kit.resealing import SealedColumn
from relais_kit.vault import (
    FileKeyRing,
    KeySet,
    Vault,
    VaultError,
    key_id_of,
    new_key_set,
    normalise,
    write_key_file,
)

CITIZEN = SealedColumn("referrals", "citizen_name")
SUMMARY = SealedColumn("referrals", "summary")
NAME = "Élodie Dupont"


def key_file(folder: Path, name: str = "keys.json") -> Path:
    path = folder / name
    write_key_file(path, new_key_set())
    return path


def vault_of(path: Path) -> Vault:
    return Vault(FileKeyRing(path, recheck_s=0))


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    return key_file(tmp_path)


def test_a_sealed_value_opens_to_what_was_sealed_and_shows_nothing_of_it(keys: Path) -> None:
    vault = vault_of(keys)
    sealed = vault.seal(NAME, CITIZEN.context("r-1"))
    assert sealed.startswith(f"rv1:{vault.current_key_id()}:")
    assert "Dupont" not in sealed and "lodie" not in sealed
    assert vault.open(sealed, CITIZEN.context("r-1")) == NAME
    assert vault.seal(NAME, CITIZEN.context("r-1")) != sealed, "a fresh nonce every time"
    record = {"name": NAME, "emails": ["elodie@example.fr"], "age": 41}
    assert vault.open_json(vault.seal_json(record, CITIZEN.context("r-1")), CITIZEN.context("r-1")) == record
    assert vault.open_optional(vault.seal_optional("x", SUMMARY.context(7)), SUMMARY.context(7)) == "x"
    assert vault.seal_optional(None, SUMMARY.context(7)) is None
    assert vault.open_optional(None, SUMMARY.context(7)) is None


@pytest.mark.parametrize("elsewhere", [CITIZEN.context("r-2"), SUMMARY.context("r-1"),
                                       SealedColumn("visits", "citizen_name").context("r-1"), ""])
def test_a_value_opens_only_in_its_own_row_and_column(keys: Path, elsewhere: str) -> None:
    vault = vault_of(keys)
    sealed = vault.seal(NAME, CITIZEN.context("r-1"))
    with pytest.raises(VaultError) as refused:
        vault.open(sealed, elsewhere)
    assert NAME not in str(refused.value)


def test_a_tampered_value_does_not_open(keys: Path) -> None:
    vault = vault_of(keys)
    context = CITIZEN.context("r-1")
    prefix, kid, body = vault.seal(NAME, context).split(":", 2)
    raw = bytearray(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for position in (0, 12, len(raw) - 1):  # the nonce, the ciphertext, the tag
        changed = bytearray(raw)
        changed[position] ^= 0x01
        forged = f"{prefix}:{kid}:{base64.urlsafe_b64encode(bytes(changed)).decode().rstrip('=')}"
        with pytest.raises(VaultError, match="does not open"):
            vault.open(forged, context)
    for cut in (f"{prefix}:{kid}:{body[:10]}", f"{prefix}:{kid}", f"{prefix}:"):  # cut short
        with pytest.raises(VaultError, match="does not open"):
            vault.open(cut, context)


def test_a_value_stored_before_sealing_existed_passes_through(keys: Path) -> None:
    vault = vault_of(keys)
    assert vault.open(NAME, CITIZEN.context("r-1")) == NAME
    assert vault.open_json('{"name": "Élodie"}', CITIZEN.context("r-1")) == {"name": "Élodie"}
    assert key_id_of(NAME) is None
    assert not vault.is_current(NAME)


def test_a_key_rotated_on_disk_is_taken_up_by_the_running_vault_and_old_keys_still_open(keys: Path) -> None:
    vault = vault_of(keys)
    first = vault.current_key_id()
    before = vault.seal(NAME, CITIZEN.context("r-1"))
    assert vault.is_current(before)

    datakeys.cmd_rotate(keys)

    second = vault.current_key_id()
    assert second != first
    after = vault.seal(NAME, CITIZEN.context("r-1"))
    assert key_id_of(after) == second and vault.is_current(after)
    assert key_id_of(before) == first and not vault.is_current(before)
    assert vault.open(before, CITIZEN.context("r-1")) == NAME
    assert vault.open(after, CITIZEN.context("r-1")) == NAME


def test_a_key_file_replaced_by_another_of_the_same_size_and_time_is_taken_up(tmp_path: Path) -> None:
    """As a copy that keeps timestamps (`cp -p`, `rsync -t`) or a coarse file-system clock
    leaves it: only the file's identity tells the change."""
    path = key_file(tmp_path)
    vault = vault_of(path)
    before = path.stat()
    replacement = new_key_set()
    assert len(json.dumps(replacement.to_json(), indent=2)) == len(json.dumps(
        FileKeyRing(path).key_set.to_json(), indent=2))
    write_key_file(path, replacement)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (before.st_size, before.st_mtime_ns)
    assert vault.current_key_id() == replacement.current_id


def test_a_running_vault_keeps_its_keys_while_the_file_is_unreadable(keys: Path) -> None:
    vault = vault_of(keys)
    current = vault.current_key_id()
    sealed = vault.seal(NAME, CITIZEN.context("r-1"))
    keys.write_text("{half a file")
    assert vault.current_key_id() == current
    assert vault.open(sealed, CITIZEN.context("r-1")) == NAME


def test_a_value_under_a_retired_key_gives_a_clear_error(keys: Path) -> None:
    vault = vault_of(keys)
    old = vault.current_key_id()
    sealed = vault.seal(NAME, CITIZEN.context("r-1"))
    datakeys.cmd_rotate(keys)
    datakeys.cmd_retire(keys, old)
    with pytest.raises(VaultError) as refused:
        vault.open(sealed, CITIZEN.context("r-1"))
    message = str(refused.value)
    assert old in message and "no longer has" in message and "referrals.citizen_name" in message
    assert NAME not in message


GOOD = base64.b64encode(bytes(range(32))).decode()
SHORT = base64.b64encode(b"sixteen bytes!!!").decode()


@pytest.mark.parametrize(("raw", "named"), [
    ({"keys": {"k1": GOOD}, "index_key": GOOD}, '"current"'),
    ({"current": "k9", "keys": {"k1": GOOD}, "index_key": GOOD}, '"current" must name one of the keys'),
    ({"current": "k1", "keys": {"k1": SHORT}, "index_key": GOOD}, "key k1: 32 bytes are needed, got 16"),
    ({"current": "k1", "keys": {"k1": "not*base64!" + GOOD}, "index_key": GOOD}, "key k1: not base64"),
    ({"current": "k1", "keys": {"k1": GOOD}, "index_key": SHORT}, "index_key: 32 bytes are needed, got 16"),
    ({"current": "k1", "keys": {"k1": GOOD}}, "index_key"),
    ({"current": "k:1", "keys": {"k:1": GOOD}, "index_key": GOOD}, "contain no ':'"),
    ({"current": "", "keys": {"": GOOD}, "index_key": GOOD}, "non-empty"),
    ({"current": "k1", "keys": {}, "index_key": GOOD}, '"keys"'),
    (["k1", GOOD], '"keys"'),
])
def test_a_bad_key_file_is_refused_naming_the_problem_and_never_a_key(raw: object, named: str) -> None:
    with pytest.raises(VaultError) as refused:
        KeySet.parse(raw, "/run/secrets/keys.json")
    message = str(refused.value)
    assert named in message and message.startswith("/run/secrets/keys.json: ")
    assert GOOD not in message and SHORT not in message


def test_a_key_file_that_is_not_json_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "keys.json"
    path.write_text("current = k1")
    with pytest.raises(VaultError, match=f"{path}: cannot read the data keys"):
        FileKeyRing(path)
    with pytest.raises(VaultError, match="cannot read the data keys"):
        FileKeyRing(tmp_path / "missing.json")


def test_a_key_set_survives_its_file() -> None:
    keys = new_key_set()
    assert KeySet.parse(json.loads(json.dumps(keys.to_json())), "here") == keys


def test_blind_indexes_ignore_case_accents_and_spacing_and_depend_on_the_index_key(tmp_path: Path) -> None:
    vault = vault_of(key_file(tmp_path, "a.json"))
    assert normalise("  Élodie \t DUPONT ") == "elodie dupont"
    same = vault.blind_index("citizen_name", "Élodie  DUPONT")
    assert same == vault.blind_index("citizen_name", "elodie dupont")
    assert NAME.lower() not in same and len(same) == 64
    assert vault.blind_index("citizen_name", "Elodie Durand") != same
    assert vault.blind_index("email", "elodie dupont") != same, "the kind is part of the index"
    other = vault_of(key_file(tmp_path, "b.json"))
    assert other.blind_index("citizen_name", "elodie dupont") != same


def test_a_blind_index_survives_a_rotation_of_the_data_keys(keys: Path) -> None:
    vault = vault_of(keys)
    before = vault.blind_index("citizen_name", NAME)
    datakeys.cmd_rotate(keys)
    assert vault.blind_index("citizen_name", NAME) == before


def test_processes_creating_the_key_file_together_end_up_with_the_same_keys(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "referral.json"
    barrier = threading.Barrier(8)
    found: list[str] = []

    def start() -> None:
        barrier.wait()
        found.append(FileKeyRing.create(path).key_set.fingerprint())

    starters = [threading.Thread(target=start) for _ in range(8)]
    for starter in starters:
        starter.start()
    for starter in starters:
        starter.join()
    again = FileKeyRing.create(path).key_set.fingerprint()  # a later start keeps the file
    assert len(found) == 8 and set(found) == {again}
    assert [p.name for p in path.parent.iterdir()] == ["referral.json"], "no temporary file left"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_written_key_file_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = key_file(tmp_path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    datakeys.cmd_rotate(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = datakeys.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def secrets_of(path: Path) -> list[str]:
    keys = FileKeyRing(path).key_set
    return [base64.b64encode(k).decode() for k in (*keys.keys.values(), keys.index)]


def test_the_datakeys_command_makes_rotates_and_retires_keys(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "keys" / "referral.json"
    code, out, _ = run(["new", "--keys", str(path)], capsys)
    first = FileKeyRing(path).key_set
    assert code == 0 and first.current_id in out and len(first.keys) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    code, _, err = run(["new", "--keys", str(path)], capsys)
    assert code == 2 and "exists" in err and "rotate" in err
    assert FileKeyRing(path).key_set == first, "an existing key file is never overwritten"

    code, out, _ = run(["rotate", "--keys", str(path)], capsys)
    rotated = FileKeyRing(path).key_set
    assert code == 0 and rotated.current_id != first.current_id and rotated.current_id in out
    assert rotated.keys[first.current_id] == first.keys[first.current_id], "the old key is kept as it was"
    assert set(rotated.keys) == {first.current_id, rotated.current_id}
    assert rotated.index == first.index, "blind indexes stay valid"

    code, _, err = run(["retire", "--keys", str(path), rotated.current_id], capsys)
    assert code == 2 and "current key" in err
    code, _, err = run(["retire", "--keys", str(path), "k-unknown"], capsys)
    assert code == 2 and "no key 'k-unknown'" in err
    assert FileKeyRing(path).key_set == rotated

    code, out, _ = run(["retire", "--keys", str(path), first.current_id], capsys)
    assert code == 0 and first.current_id in out
    assert set(FileKeyRing(path).key_set.keys) == {rotated.current_id}
    printed = out + err
    assert not any(secret in printed for secret in secrets_of(path)), "no key is ever printed"


def test_the_datakeys_command_refuses_to_rotate_a_missing_file(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["rotate", "--keys", str(tmp_path / "none.json")], capsys)
    assert code == 2 and "cannot read the data keys" in err
