"""A token that guards something reachable beyond loopback must be a strong one (issue #13):
the TTS service on a public host, the Modal container, the admin endpoint on a public host
each refuse to start with a short one, saying how to make a good one."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from bots.admin import AdminBindRefused, check_admin_bind
from bots.run import run
from storage.settings import StorageSettings
from tests.bots.harness import bot_settings
from tests.bots.test_cli import saybot
from tests.tts_helpers import make_settings
from tts_service.api import UnsafeBind, check_bind_allowed
from tts_service.exposure import MIN_TOKEN_CHARS

MAKE = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'
WEAK = "hunter2-but-longer"  # 18 characters: was enough before
STRONG = "k" * MIN_TOKEN_CHARS


def test_the_tts_service_beyond_loopback_needs_a_strong_token() -> None:
    weak = make_settings(api_token=SecretStr(WEAK))
    for host in ("0.0.0.0", "192.168.1.10", "tts.example.org"):
        with pytest.raises(UnsafeBind, match=r"TTS_API_TOKEN is shorter than 32") as refused:
            check_bind_allowed(host, weak)
        assert MAKE in str(refused.value) and WEAK not in str(refused.value)
    check_bind_allowed("127.0.0.1", weak)  # nothing else on the network reaches it
    check_bind_allowed("0.0.0.0", make_settings(api_token=SecretStr(STRONG)))


def test_serve_tts_refuses_a_weak_token_on_a_public_host(tmp_path: Path) -> None:
    result = saybot("serve-tts", "--host", "0.0.0.0", cwd=tmp_path, TTS_API_TOKEN=WEAK)
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0: TTS_API_TOKEN is shorter than 32" in result.stderr
    assert MAKE in result.stderr
    assert "Traceback" not in result.stderr and WEAK not in result.stderr


def test_the_admin_endpoint_beyond_loopback_needs_a_strong_token() -> None:
    with pytest.raises(AdminBindRefused, match=r"ADMIN_TOKEN is shorter than 32") as refused:
        check_admin_bind(bot_settings(admin_host="0.0.0.0", admin_token=SecretStr(WEAK)))
    assert MAKE in str(refused.value)
    check_admin_bind(bot_settings(admin_host="0.0.0.0", admin_token=SecretStr(STRONG)))
    check_admin_bind(bot_settings(admin_host="127.0.0.1", admin_token=SecretStr(WEAK)))


async def test_run_refuses_a_weak_admin_token_on_a_public_host_before_starting_anything(
    tmp_path: Path,
) -> None:
    settings = bot_settings(admin_host="0.0.0.0", admin_token=SecretStr(WEAK))
    storage = StorageSettings(_env_file=None, redis_url=None, embedded_data_dir=tmp_path)  # type: ignore[call-arg]
    with pytest.raises(AdminBindRefused, match="ADMIN_TOKEN is shorter"):
        await run(settings, storage, asyncio.Event())
    assert not await asyncio.to_thread(lambda: list(tmp_path.iterdir())), "no Valkey started"
