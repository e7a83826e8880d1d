"""Clips at rest: AES-GCM, a versioned header naming the key, the voice id bound in, rotation."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from storage.clip_cipher import (
    KEY_FILE,
    ClipCipher,
    ClipUnreadable,
    DataKeyError,
    clip_cipher_for,
    is_sealed,
    key_id,
    load_key_file,
    new_key_text,
    parse_keys,
)

VOICE_A = "a1" * 32
VOICE_B = "b2" * 32
FLAC = b"fLaC" + bytes(range(256)) * 8


def test_a_sealed_clip_is_not_the_flac_and_opens_again() -> None:
    text = new_key_text()
    cipher = ClipCipher.from_text(text)
    sealed = cipher.seal(VOICE_A, FLAC)
    assert b"fLaC" not in sealed and FLAC[100:200] not in sealed
    assert sealed[:1] == b"\x01" and sealed[1:9] == key_id(parse_keys(text)[0])
    assert len(sealed) == 1 + 8 + 12 + len(FLAC) + 16
    assert is_sealed(sealed) and not is_sealed(FLAC)
    assert cipher.open(VOICE_A, sealed) == (FLAC, True)
    assert cipher.seal(VOICE_A, FLAC) != sealed, "a fresh nonce each time"


def test_a_clip_cannot_be_moved_to_another_voice_or_edited() -> None:
    cipher = ClipCipher.from_text(new_key_text())
    sealed = cipher.seal(VOICE_A, FLAC)
    with pytest.raises(ClipUnreadable, match="authenticate"):
        cipher.open(VOICE_B, sealed)
    edited = bytearray(sealed)
    edited[-1] ^= 1
    with pytest.raises(ClipUnreadable):
        cipher.open(VOICE_A, bytes(edited))
    with pytest.raises(ClipUnreadable, match="not a sealed clip"):
        cipher.open(VOICE_A, FLAC)


def test_a_wrong_key_cannot_open_it() -> None:
    sealed = ClipCipher.from_text(new_key_text()).seal(VOICE_A, FLAC)
    with pytest.raises(ClipUnreadable, match="not configured"):
        ClipCipher.from_text(new_key_text()).open(VOICE_A, sealed)
    # The same key id but another key (a forged header) fails authentication instead.
    other = ClipCipher.from_text(new_key_text())
    forged = sealed[:9] + other.seal(VOICE_A, FLAC)[9:]
    with pytest.raises(ClipUnreadable):
        ClipCipher.from_text(new_key_text()).open(VOICE_A, forged)


def test_rotation_the_first_key_seals_every_key_opens() -> None:
    old, new = new_key_text(), new_key_text()
    sealed_old = ClipCipher.from_text(old).seal(VOICE_A, FLAC)
    rotating = ClipCipher.from_text(f"{new}, {old}")
    assert rotating.sealing_key_id == key_id(parse_keys(new)[0])
    assert rotating.open(VOICE_A, sealed_old) == (FLAC, False), "opens, and asks to reseal"
    resealed = rotating.seal(VOICE_A, FLAC)
    assert ClipCipher.from_text(new).open(VOICE_A, resealed) == (FLAC, True)
    with pytest.raises(ClipUnreadable):
        ClipCipher.from_text(new).open(VOICE_A, sealed_old)


@pytest.mark.parametrize(
    ("text", "problem"),
    [("", "no key"), ("not base64!", "not base64"), ("c2hvcnQ", "5 bytes, not 32")],
)
def test_bad_keys_are_refused_without_echoing_them(text: str, problem: str) -> None:
    with pytest.raises(DataKeyError, match=problem) as caught:
        parse_keys(f"{new_key_text()},{text}" if text else text)
    if text:
        assert text not in str(caught.value)


def test_unpadded_keys_are_accepted() -> None:
    assert parse_keys(new_key_text().rstrip("="))[0] != b""


def test_the_key_file_is_made_once_private_and_reused(tmp_path: Path) -> None:
    path = tmp_path / KEY_FILE
    first = load_key_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    assert load_key_file(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.write_text("damaged")
    with pytest.raises(DataKeyError):
        load_key_file(path)


def test_which_cipher_and_warning(tmp_path: Path) -> None:
    key = new_key_text()
    shared, warning = clip_cipher_for(None, None, "redis://shared:6379")
    assert shared is None and warning is not None and "unencrypted" in warning
    explicit, warning = clip_cipher_for(SecretStr(key), None, "redis://shared:6379")
    assert explicit is not None and warning is None
    assert explicit.sealing_key_id == key_id(parse_keys(key)[0])
    assert not (tmp_path / KEY_FILE).exists()
    embedded, warning = clip_cipher_for(None, tmp_path, "redis://127.0.0.1:1")
    assert embedded is not None and warning is None and (tmp_path / KEY_FILE).exists()
    # An explicit key seals; the key file it took over from still opens.
    sealed = embedded.seal(VOICE_A, FLAC)
    both, _ = clip_cipher_for(SecretStr(key), tmp_path, "redis://127.0.0.1:1")
    assert both is not None and both.sealing_key_id == explicit.sealing_key_id
    assert both.open(VOICE_A, sealed) == (FLAC, False)
