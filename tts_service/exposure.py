"""What every "may this be exposed?" rule rests on: is a secret set, is a host loopback, is
a token strong enough to guard something reachable from elsewhere.

The TTS service (``check_bind_allowed``, its bearer auth, the Modal app) and the bots (the
admin endpoint, the TTS client's token) all decide with these, so a setting means the same
everywhere: ``TTS_API_TOKEN=`` (blank) or ``"  "`` is *no token*, both for "may it listen
beyond loopback?" (no) and for "who may call it?" (anyone, on loopback only). A token that
guards a non-loopback listener (or the Modal container's public URL) must have at least
``MIN_TOKEN_CHARS`` characters: ``check_strong_token`` refuses shorter ones with
``WeakToken``, saying how to make a good one (``MAKE_TOKEN``).

The bots import this module; it imports nothing of saybot's, and ``tts_service`` never
imports ``bots``.
"""

from __future__ import annotations

import ipaddress

from pydantic import SecretStr

# What `secrets.token_urlsafe(32)` makes has 43: guessing one is out of reach.
MIN_TOKEN_CHARS = 32
MAKE_TOKEN = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'  # noqa: S105 - a command


class WeakToken(ValueError):
    """A token guards something reachable beyond loopback but is too short to be one."""


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


def check_strong_token(name: str, secret: SecretStr | None, host: str | None) -> None:
    """``WeakToken`` if ``secret`` guards a listener on ``host`` (``None``: a public URL) that
    is reachable beyond loopback and is shorter than ``MIN_TOKEN_CHARS``.

    An unset secret passes: whether anything may listen without one is each caller's rule.
    """
    value = secret_value(secret)
    if value is None or (host is not None and is_loopback(host)):
        return
    if len(value.strip()) < MIN_TOKEN_CHARS:
        where = "a public URL" if host is None else f"a listener on {host}"
        raise WeakToken(
            f"{name} is shorter than {MIN_TOKEN_CHARS} characters, too weak to guard {where}; "
            f"make one with: {MAKE_TOKEN}"
        )
