"""The two facts every "may this be exposed?" rule rests on: is a secret set, is a host loopback.

The TTS service (``check_bind_allowed``, its bearer auth, the Modal app) and the bots (the
admin endpoint, the TTS client's token) all decide with these, so a setting means the same
everywhere: ``TTS_API_TOKEN=`` (blank) or ``"  "`` is *no token*, both for "may it listen
beyond loopback?" (no) and for "who may call it?" (anyone, on loopback only).

The bots import this module; it imports nothing of saybot's, and ``tts_service`` never
imports ``bots``.
"""

from __future__ import annotations

import ipaddress

from pydantic import SecretStr


def secret_value(secret: SecretStr | None) -> str | None:
    """The secret's value, or None when it is unset: None, empty or only whitespace.

    A blank ``TOKEN=`` line in an ``.env`` file must never mean "any token will do".
    """
    if secret is None:
        return None
    value = secret.get_secret_value()
    return value if value.strip() else None


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` reaches this machine only: ``localhost``, 127.0.0.0/8, ::1.

    Names other than ``localhost`` are not resolved: they count as reachable from outside.
    """
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
