"""The two facts behind every "may this be exposed?" rule, service and bots alike."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from tts_service.exposure import is_loopback, secret_value


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
