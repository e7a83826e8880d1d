"""Voice clips encrypted at rest: AES-256-GCM under ``SAYBOT_DATA_KEY`` (or a key file).

A clip is biometric personal data, so what Redis holds for one is sealed::

    0x01 | key id (8 bytes: sha256(key)[:8]) | nonce (12 random bytes) | ciphertext + tag

with the first 9 bytes and the voice id as associated data: a clip moved under another voice's
key, or a header edited to point at another key, fails to open like a wrong key does.

``SAYBOT_DATA_KEY`` holds one or more keys, each the URL-safe base64 of 32 bytes, separated
by commas: the first seals, every one opens (the key id picks which). To rotate, put a new key
first and keep the old one after it until every clip was either re-sealed (each use of a clip
sealed under an older key, or stored before encryption was on, writes it back under the first
key) or has expired (``VOICE_IDLE_TTL_S``).

Without ``SAYBOT_DATA_KEY`` the embedded server's data directory gets a key file of its own
(``saybot.key``, 0600, reused across restarts). A shared ``REDIS_URL`` without a key stores
clips as they are, and says so at start and in ``/readyz``: see ``clip_cipher_for``.

Prepared clips are FLAC (they start with ``fLaC``), never with the version byte, which is how
a clip stored before encryption was turned on is told from a sealed one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from pydantic import SecretStr

log = logging.getLogger("storage")

VERSION = b"\x01"
KEY_BYTES = 32  # AES-256
KEY_ID_BYTES = 8
NONCE_BYTES = 12  # GCM's standard nonce; random, so a key seals at most ~2^32 clips safely
_HEADER_BYTES = len(VERSION) + KEY_ID_BYTES
_TAG_BYTES = 16
KEY_FILE = "saybot.key"


class DataKeyError(ValueError):
    """``SAYBOT_DATA_KEY`` (or the key file) is not a list of base64 32-byte keys."""


class ClipUnreadable(ValueError):
    """A sealed clip that no configured key opens (or that was tampered with)."""


def parse_keys(text: str) -> list[bytes]:
    """``"k1,k2"`` → the raw keys, first the one that seals; never echoes key material."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts:
        raise DataKeyError("SAYBOT_DATA_KEY holds no key")
    found: list[bytes] = []
    for position, part in enumerate(parts, start=1):
        try:
            key = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        except (binascii.Error, ValueError) as exc:
            raise DataKeyError(f"key #{position} of SAYBOT_DATA_KEY is not base64") from exc
        if len(key) != KEY_BYTES:
            raise DataKeyError(
                f"key #{position} of SAYBOT_DATA_KEY is {len(key)} bytes, not {KEY_BYTES}"
            )
        found.append(key)
    return found


def new_key_text() -> str:
    """A fresh key as ``SAYBOT_DATA_KEY`` writes it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def key_id(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()[:KEY_ID_BYTES]


def is_sealed(blob: bytes) -> bool:
    """Whether ``blob`` is a sealed clip rather than one stored before encryption was on."""
    return blob[:1] == VERSION and len(blob) >= _HEADER_BYTES + NONCE_BYTES + _TAG_BYTES


class ClipCipher:
    """Seals clips under the first key, opens them under any; the voice id is bound in."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise DataKeyError("a ClipCipher needs at least one key")
        self._by_id = {key_id(key): AESGCM(key) for key in reversed(keys)}
        self.sealing_key_id = key_id(keys[0])

    @classmethod
    def from_text(cls, text: str) -> ClipCipher:
        return cls(parse_keys(text))

    def seal(self, voice_id: str, clip: bytes) -> bytes:
        header = VERSION + self.sealing_key_id
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._by_id[self.sealing_key_id].encrypt(nonce, clip, header + voice_id.encode())
        return header + nonce + sealed

    def open(self, voice_id: str, blob: bytes) -> tuple[bytes, bool]:
        """The clip, and whether it is sealed under the current key (else: seal it again).

        ``ClipUnreadable`` when it is not sealed, its key is not configured, or it does
        not authenticate (another voice's clip, edited bytes).
        """
        if not is_sealed(blob):
            raise ClipUnreadable("not a sealed clip")
        header, nonce = blob[:_HEADER_BYTES], blob[_HEADER_BYTES : _HEADER_BYTES + NONCE_BYTES]
        kid = header[len(VERSION) :]
        aead = self._by_id.get(kid)
        if aead is None:
            raise ClipUnreadable(f"sealed under key id {kid.hex()}, which is not configured")
        try:
            clip = aead.decrypt(
                nonce, blob[_HEADER_BYTES + NONCE_BYTES :], header + voice_id.encode()
            )
        except InvalidTag as exc:
            raise ClipUnreadable(f"does not authenticate under key id {kid.hex()}") from exc
        return clip, kid == self.sealing_key_id


def load_key_file(path: Path) -> str:
    """The key in ``path``, created (0600, exclusively) on first use; its mode kept 0600."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        path.chmod(0o600)
        text = path.read_text(encoding="ascii").strip()
        parse_keys(text)  # a damaged file is an error at start, not unreadable clips later
        return text
    text = new_key_text()
    with os.fdopen(fd, "w", encoding="ascii") as file:
        file.write(text + "\n")
    log.info("storage: generated a data key for voice clips in %s", path)
    return text


def clip_cipher_for(
    data_key: SecretStr | None, embedded_data_dir: Path | None, redis_for_logs: str
) -> tuple[ClipCipher | None, str | None]:
    """The cipher for voice clips, and a warning when there is none.

    ``SAYBOT_DATA_KEY`` wins; with the embedded server, the data directory's key file is
    used (and kept as the last decrypting key when ``SAYBOT_DATA_KEY`` is set, so moving to
    an explicit key leaves no clip unreadable). A shared ``REDIS_URL`` without a key: no
    cipher, and the warning says clips are stored unencrypted there.
    """
    texts: list[str] = []
    if data_key is not None and data_key.get_secret_value().strip():
        texts.append(data_key.get_secret_value())
    if embedded_data_dir is not None:
        key_file = embedded_data_dir / KEY_FILE
        if not texts or key_file.exists():
            texts.append(load_key_file(key_file))
    if not texts:
        warning = (
            f"SAYBOT_DATA_KEY is not set: voice clips are stored unencrypted in {redis_for_logs}"
        )
        log.warning("storage: %s", warning)
        return None, warning
    keys = [key for text in texts for key in parse_keys(text)]
    return ClipCipher(list(dict.fromkeys(keys))), None
