"""The facts behind every "may this be exposed?" rule, service and bots alike."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tts_service.exposure import (
    MIN_TOKEN_CHARS,
    WeakToken,
    check_strong_token,
    is_loopback,
    secret_value,
)


@pytest.mark.parametrize("unset", [None, SecretStr(""), SecretStr("   "), SecretStr("\t\n")])
def test_none_blank_and_whitespace_secrets_are_unset(unset: SecretStr | None) -> None:
    assert secret_value(unset) is None


def test_a_set_secret_is_returned_as_it_is() -> None:
    assert secret_value(SecretStr(" padded-token ")) == " padded-token "


@pytest.mark.parametrize("host", ["localhost", "127.0.0.1", "127.8.9.10", "::1"])
def test_loopback_hosts(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "192.168.1.10", "10.0.0.1", "example.org", "localhost.example", ""]
)
def test_every_other_host_is_reachable_from_outside(host: str) -> None:
    assert not is_loopback(host)


# --- a token guarding something beyond loopback must be a strong one ------------------------

STRONG = "s" * MIN_TOKEN_CHARS


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.org", None])
@pytest.mark.parametrize(
    "weak", ["Q", "short-token", "Z" * (MIN_TOKEN_CHARS - 1), " " * 40 + "QRW"]
)
def test_a_short_token_beyond_loopback_is_refused_saying_how_to_make_one(
    host: str | None, weak: str
) -> None:
    with pytest.raises(WeakToken) as refused:
        check_strong_token("SOME_TOKEN", SecretStr(weak), host)
    message = str(refused.value)
    assert "SOME_TOKEN" in message and str(MIN_TOKEN_CHARS) in message
    assert 'python -c "import secrets; print(secrets.token_urlsafe(32))"' in message
    assert weak.strip() not in message  # the token itself is never echoed


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_on_loopback_any_token_will_do(host: str) -> None:
    check_strong_token("SOME_TOKEN", SecretStr("x"), host)


@pytest.mark.parametrize("host", ["0.0.0.0", None])
def test_a_strong_or_unset_token_passes(host: str | None) -> None:
    check_strong_token("SOME_TOKEN", SecretStr(STRONG), host)
    check_strong_token("SOME_TOKEN", None, host)  # "may it run without one?" is each caller's
    check_strong_token("SOME_TOKEN", SecretStr("   "), host)
