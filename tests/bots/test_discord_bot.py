"""saybot's real discord.py client against the Discord gateway/REST/CDN stand-in.

Full path: stand-in → discord.py → SayFlow → Valkey → real TTS service with Piper.
Nothing in discord.py is mocked; assertions are on what the stand-in received.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from pydantic import SecretStr
from redis.asyncio import Redis

from bots.clips import ClipLimits
from bots.discord_bot.client import (
    SayBot,
    ShardedSayBot,
    build_client,
    is_connected,
    start_discord,
    stop_discord,
)
from bots.discord_bot.replies import ANSWERED_PRIVATELY, TURNED_AWAY
from bots.discord_bot.signatures import language_choices
from bots.discord_bot.voice_message import voice_metadata
from bots.messages import GAVE_UP
from bots.run import start_adapters
from bots.say import SayFlow, SayRequest
from bots.settings import BotSettings
from storage.redis import make_client
from storage.settings import StorageSettings
from tests.bots.harness import (
    CountingApp,
    Service,
    bot_settings,
    consented_before,
    running_service,
    say_flow,
)
from tests.redis_fixtures import make_settings, start_valkey
from tests.servers import serve_in_thread
from tests.standins.discord_api import (
    FLAG_EPHEMERAL,
    FLAG_IS_VOICE_MESSAGE,
    FLAG_LOADING,
    AttachmentSpec,
    Call,
    DiscordStandin,
    UploadedFile,
    discord_pointed_at,
)
from tests.standins.telegram_api import TOKEN as TELEGRAM_TOKEN
from tests.standins.telegram_api import TelegramStandin
from tests.tts_helpers import make_settings as tts_settings
from tests.tts_helpers import wait_ready
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service import audio
from tts_service.api import create_app
from tts_service.engines.piper import PiperEngine
from tts_service.schema import AudioFormat

USER = 80351110224678912
CALLBACK_MESSAGE, CALLBACK_DEFERRED = 4, 5


class QuickShards(ShardedSayBot):
    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause between the shards' IDENTIFYs (Discord's max_concurrency 1 wants one)."""


@dataclass
class Outcome:
    """Everything one interaction caused: its REST calls in order and the messages left."""

    calls: list[Call]
    messages: list[dict[str, Any]]

    @property
    def callback(self) -> Call:
        return next(c for c in self.calls if c.path.endswith("/callback"))

    def message(self) -> dict[str, Any]:
        """The one message the user ends up with."""
        assert len(self.messages) == 1, self.messages
        return self.messages[0]

    def private_text(self) -> str:
        message = self.message()
        assert message["flags"] & FLAG_EPHEMERAL, message
        return str(message["content"])

    def upload(self) -> UploadedFile:
        uploads = [f for c in self.calls for f in c.files]
        assert len(uploads) == 1, uploads
        return uploads[0]


@dataclass
class Bot:
    standin: DiscordStandin
    client: SayBot
    flow: SayFlow
    service: Service
    settings: BotSettings

    async def command(
        self,
        name: str,
        options: list[dict[str, Any]] | None = None,
        *,
        user_id: int = USER,
        timeout: float = 30,  # noqa: ASYNC109 - one bound per awaited answer reads best here
        **kwargs: Any,
    ) -> Outcome:
        """Dispatch ``/name`` and wait until the bot has finished answering it."""
        payload = await self.standin.send_slash_command(name, options, user_id=user_id, **kwargs)
        return await asyncio.wait_for(self.settled(payload), timeout)

    async def settled(self, payload: dict[str, Any]) -> Outcome:
        """Once acknowledged, the command's task is in ``in_flight`` until it has answered."""
        token = payload["token"]
        await self.standin.wait_for(lambda c: c.path.endswith(f"/{token}/callback"), timeout=60)
        if self.client.in_flight:
            await asyncio.wait(set(self.client.in_flight))
        return Outcome(self.standin.calls(token), self.standin.interaction_messages(payload))

    async def say(self, text: str, **kwargs: Any) -> Outcome:
        return await self.command("say", [{"name": "text", "value": text}], **kwargs)


@contextlib.asynccontextmanager
async def discord_bot(
    standin: DiscordStandin,
    flow: SayFlow,
    make: Callable[..., SayBot] = build_client,
    client_options: dict[str, Any] | None = None,
    **overrides: Any,
) -> AsyncIterator[SayBot]:
    """saybot's client, started as ``saybot run`` starts it, ready on the stand-in;
    ``client_options`` go to discord.py's client, ``overrides`` to the settings."""
    settings = bot_settings(discord_bot_token=SecretStr(standin.token), **overrides)
    client = make(settings, flow, guild_ready_timeout=0, **(client_options or {}))
    await start_discord(client)
    try:
        await asyncio.wait_for(client.wait_until_ready(), 5)
        yield client
    finally:
        await stop_discord(client, drain_timeout_s=10)


@contextlib.asynccontextmanager
async def running_bot(
    redis: Redis,
    storage: StorageSettings,
    service: Service,
    *,
    shards: int = 1,
    make: Callable[..., SayBot] = build_client,
    clip_limits: ClipLimits | None = None,
    **overrides: Any,
) -> AsyncIterator[Bot]:
    async with (
        DiscordStandin(shards=shards) as standin,
        discord_pointed_at(standin),
        say_flow(redis, storage, service.url, clip_limits=clip_limits) as flow,
        discord_bot(standin, flow, make, **overrides) as client,
    ):
        yield Bot(standin, client, flow, service, client.settings)


@pytest.fixture
async def bot(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> AsyncIterator[Bot]:
    async with running_bot(redis_client, open_storage, service) as running:
        yield running


def decoded(upload: UploadedFile) -> Any:
    return sf.info(io.BytesIO(upload.data))


def assert_public_defer_then_answer(outcome: Outcome) -> Call:
    """Deferred publicly, then the "thinking…" message edited into the answer."""
    assert outcome.callback.json == {"type": CALLBACK_DEFERRED}
    edit = next(c for c in outcome.calls if c.method == "PATCH")
    assert outcome.callback.seq < edit.seq
    assert edit.path.endswith("/messages/@original")
    return edit


# --- commands --------------------------------------------------------------------------------


async def test_commands_sync_globally_with_ranges_and_descriptions(bot: Bot) -> None:
    assert list(bot.standin.synced_commands) == [None]  # global by default
    commands = {c["name"]: c for c in bot.standin.synced_commands[None]}
    assert set(commands) == {"say", "voice", "forget", "help", "settings"} | {
        "join",
        "leave",
        "skip",
        "stop",
        "read",  # voice channels: tests/bots/test_discord_voice.py
    }
    options = {o["name"]: o for o in commands["say"]["options"]}
    assert list(options) == [
        "text",
        "voice",
        "exaggeration",
        "temperature",
        "cfg_weight",
        "seed",
        "language",
    ]
    assert options["language"]["autocomplete"] is True
    assert (options["language"]["min_length"], options["language"]["max_length"]) == (2, 2)
    assert options["text"] | {"description": ""} == {
        "type": 3,
        "name": "text",
        "description": "",
        "required": True,
        "min_length": 1,
        "max_length": 1000,
    }
    assert options["voice"]["type"] == 11 and not options["voice"]["required"]
    ranges = {n: (o["type"], o.get("min_value"), o.get("max_value")) for n, o in options.items()}
    assert ranges["exaggeration"] == (10, 0.25, 2.0)
    assert ranges["temperature"] == (10, 0.05, 5.0)
    assert ranges["cfg_weight"] == (10, 0.0, 1.0)
    assert ranges["seed"] == (4, 0, 2**53)
    assert "0.25 to 2" in options["exaggeration"]["description"]
    assert all(o["description"] != "…" for o in options.values())
    voice = {o["name"]: o for o in commands["voice"]["options"]}
    assert list(voice) == ["set", "show", "forget", "default"]
    assert voice["set"]["options"][0]["type"] == 11 and voice["set"]["options"][0]["required"]
    identify = bot.standin.identifies[0]
    assert identify["intents"] == 1 | 1 << 7  # GUILDS, GUILD_VOICE_STATES: nothing privileged


async def test_language_autocomplete_answers_with_the_engines_languages(bot: Bot) -> None:
    """An autocomplete interaction gets its choices from the engine's list: Piper lists none."""
    await bot.say("hello")  # the engine's identity is known from here on
    payload = bot.standin.slash_command(
        "say",
        [{"name": "text", "value": "bonjour"}, {"name": "language", "value": "f", "focused": True}],
        user_id=USER,
    )
    payload["type"] = 4  # APPLICATION_COMMAND_AUTOCOMPLETE
    await bot.standin.dispatch_interaction(payload)
    reply = await bot.standin.wait_for(lambda c: c.path.endswith(f"/{payload['token']}/callback"))
    assert reply.json == {"type": 8, "data": {"choices": []}}  # AUTOCOMPLETE_RESULT


def test_language_choices_match_code_or_name() -> None:
    languages = ["de", "en", "fi", "fr"]
    assert [c.value for c in language_choices(languages, "f")] == ["fi", "fr"]
    assert [c.value for c in language_choices(languages, "Fren")] == ["fr"]
    assert [c.name for c in language_choices(languages, "de")] == ["German (de)"]
    assert len(language_choices([f"{a}{b}" for a in "abc" for b in "abcdefghij"], "")) == 25


async def test_a_language_on_an_engine_with_one_is_refused_in_one_sentence(bot: Bot) -> None:
    outcome = await bot.command(
        "say", [{"name": "text", "value": "bonjour"}, {"name": "language", "value": "fr"}]
    )
    text = outcome.private_text()
    assert "speaks one language" in text and "multilingual" in text


async def test_guild_ids_sync_to_those_guilds_only(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with (
        DiscordStandin() as standin,
        discord_pointed_at(standin),
        say_flow(redis_client, open_storage, service.url) as flow,
        discord_bot(standin, flow, discord_guild_ids=[standin.guild_id]),
    ):
        assert list(standin.synced_commands) == [standin.guild_id]
        assert standin.command_id("say", standin.guild_id) is not None
        payload = await standin.send_slash_command("help", user_id=USER, guild_id=standin.guild_id)
        assert payload["data"]["guild_id"] == str(standin.guild_id)
        reply = await standin.wait_for("/callback", timeout=5)
        assert "/say" in reply.json["data"]["content"]


async def test_help_is_private(bot: Bot) -> None:
    outcome = await bot.command("help")
    assert outcome.callback.json["type"] == CALLBACK_MESSAGE
    assert "/voice set" in outcome.private_text()
    assert outcome.private_text().endswith(
        "how to erase it: docs/privacy.md in saybot's repository"
    )


# --- the happy path --------------------------------------------------------------------------


async def test_say_defers_then_answers_with_ogg_opus(bot: Bot) -> None:
    outcome = await bot.say("Hello from Discord. This sentence gives the engine some work.")
    edit = assert_public_defer_then_answer(outcome)
    upload = outcome.upload()
    assert upload.filename == "say.ogg" and upload in edit.files
    info = decoded(upload)
    assert (info.format, info.subtype, info.samplerate) == ("OGG", "OPUS", 48000)
    assert 2 < info.duration < 15
    message = outcome.message()
    assert not message["flags"] & (FLAG_EPHEMERAL | FLAG_LOADING)
    assert re.fullmatch(r"🤖🔊 AI voice · built-in voice · \d+\.\d s", message["content"])
    assert message["attachments"][0]["content_type"] == "audio/ogg"


async def test_second_identical_say_is_served_from_cache(bot: Bot) -> None:
    before = bot.service.counter.tts_requests
    first = await bot.say("Cache me once.")
    second = await bot.say("Cache   me once.")
    assert bot.service.counter.tts_requests == before + 1
    assert first.upload().data == second.upload().data
    assert_public_defer_then_answer(first)
    # A hit needs no "thinking…": it is the interaction's one public response, file and all.
    assert second.callback.json["type"] == CALLBACK_MESSAGE
    assert second.callback.json["data"]["content"].startswith("🤖🔊 AI voice · built-in voice")
    assert second.callback.files and not any(c.method == "PATCH" for c in second.calls)


async def test_options_reach_the_engine_and_a_seed_repeats(bot: Bot, redis_client: Redis) -> None:
    options: list[dict[str, Any]] = [
        {"name": "text", "value": "Options work."},
        {"name": "seed", "value": 7},
        {"name": "temperature", "value": 0.5},
    ]
    before = bot.service.counter.tts_requests
    one = await bot.command("say", options)
    await redis_client.flushall()  # a second synthesis, not a cache hit, must repeat the bytes
    two = await bot.command("say", options)
    assert one.upload().data == two.upload().data
    assert bot.service.counter.tts_requests == before + 2


async def test_voice_message_option(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with running_bot(redis_client, open_storage, service, discord_voice_messages=True) as bot:
        outcome = await bot.say("This answer is a voice message.")
        edit = assert_public_defer_then_answer(outcome)
        assert edit.json["content"].startswith("🤖🔊 AI voice · built-in voice") and not edit.files
        post = next(c for c in outcome.calls if c.method == "POST" and c.files)
        assert edit.seq < post.seq
        assert post.json["flags"] == FLAG_IS_VOICE_MESSAGE and "content" not in post.json
        (meta,) = post.json["attachments"]
        upload = outcome.upload()
        assert upload.content_type == "audio/ogg"
        info = decoded(upload)
        assert info.subtype == "OPUS"
        assert meta["duration_secs"] == pytest.approx(info.duration, abs=0.05)
        waveform = base64.b64decode(meta["waveform"])
        assert abs(len(waveform) - min(256, info.duration * 10)) < 1  # a point per 100 ms
        assert max(waveform) > 150 and min(waveform) < 100  # speech and its pauses
        caption, voice = outcome.messages
        assert voice["flags"] & FLAG_IS_VOICE_MESSAGE and not voice["flags"] & FLAG_EPHEMERAL
        assert voice["attachments"][0]["waveform"] == meta["waveform"]
        assert caption["content"] == edit.json["content"]

        # Discord may refuse one (no Send Voice Messages permission): the audio comes as a file
        bot.standin.fail_next(
            "/webhooks/",
            403,
            {"code": 50013, "message": "Missing Permissions"},
            method="POST",
        )
        fallback = await bot.say("This answer is a voice message.")
        posts = [c for c in fallback.calls if c.method == "POST" and c.files]
        assert [c.status for c in posts] == [403, 200]
        assert not posts[1].json.get("flags")
        assert decoded(posts[1].files[0]).subtype == "OPUS"
        assert len(fallback.messages) == 2  # the caption, then the file


def test_voice_metadata_of_silence_and_of_long_audio() -> None:
    silence = audio.encode(np.zeros(2_400, dtype=np.float32), 48_000, AudioFormat.OGG_OPUS)
    waveform, duration_s = voice_metadata(silence)
    assert base64.b64decode(waveform) == b"\x00" and duration_s == pytest.approx(0.05, abs=0.01)
    tone = np.sin(np.arange(48_000 * 40) * 0.05).astype(np.float32) * 0.5
    waveform, duration_s = voice_metadata(audio.encode(tone, 48_000, AudioFormat.OGG_OPUS))
    points = base64.b64decode(waveform)
    assert len(points) == 256 and min(points) > 200  # a steady tone: even loudness
    assert duration_s == pytest.approx(40, abs=0.05)


# --- bad input: one private sentence each, nothing synthesised -------------------------------


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([{"name": "text", "value": "   "}], "I can't say that: text is empty"),
        ([{"name": "text", "value": "x" * 1001}], "the limit is 1000"),
        (
            [{"name": "text", "value": "Hi"}, {"name": "exaggeration", "value": 9.0}],
            "exaggeration must be a number from 0.25 to 2",
        ),
        (
            [{"name": "text", "value": "Hi"}, {"name": "seed", "value": -1}],
            "seed must be a whole number ≥ 0",
        ),
    ],
)
async def test_bad_say_is_refused_privately_before_deferring(
    bot: Bot, options: list[dict[str, Any]], expected: str
) -> None:
    before = bot.service.counter.tts_requests
    outcome = await bot.command("say", options)
    assert [c.path.rsplit("/", 1)[-1] for c in outcome.calls] == ["callback"]
    assert outcome.callback.json["type"] == CALLBACK_MESSAGE
    assert expected in outcome.private_text()
    assert bot.service.counter.tts_requests == before


async def test_cloning_with_piper_is_refused_privately_before_deferring(bot: Bot) -> None:
    voice = AttachmentSpec("me.ogg", "audio/ogg", clip("ogg_opus"))
    outcome = await bot.command(
        "say", [{"name": "text", "value": "Hi"}], attachments={"voice": voice}
    )
    assert [c.path.rsplit("/", 1)[-1] for c in outcome.calls] == ["callback"]
    assert outcome.callback.json["type"] == CALLBACK_MESSAGE
    assert "Voice cloning needs the GPU engine" in outcome.private_text()
    assert sum(bot.standin.cdn_downloads.values()) == 0  # refused before downloading anything


class SlowEngineInfo:
    """ASGI wrapper: the service answers ``GET /v1/engine`` late, as a cold GPU would."""

    def __init__(self, app: Any, delay_s: float) -> None:
        self.app = app
        self.delay_s = delay_s

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == "/v1/engine":
            await asyncio.sleep(self.delay_s)
        await self.app(scope, receive, send)


async def test_cloning_refused_after_deferring_when_the_engine_answers_slowly(
    redis_client: Redis, open_storage: StorageSettings, piper_engine: PiperEngine
) -> None:
    """A slow engine lookup must not hold up Discord's 3 s acknowledgement: defer first."""
    counter = CountingApp(SlowEngineInfo(create_app(piper_engine, tts_settings()), 1.5))
    with serve_in_thread(counter) as url:
        wait_ready(url)
        async with running_bot(redis_client, open_storage, Service(url, counter)) as bot:
            voice = AttachmentSpec("me.ogg", "audio/ogg", clip("ogg_opus"))
            outcome = await bot.command(
                "say", [{"name": "text", "value": "Hi"}], attachments={"voice": voice}
            )
    assert "Voice cloning needs the GPU engine" in outcome.private_text()
    assert sum(bot.standin.cdn_downloads.values()) == 0
    # After a public deferral: resolve it, answer privately, delete the public line.
    steps = [(c.method, c.path.rsplit("/", 1)[-1], c.status) for c in outcome.calls]
    token = outcome.callback.path.split("/")[-2]
    assert steps == [
        ("POST", "callback", 200),
        ("PATCH", "@original", 200),
        ("POST", token, 200),
        ("DELETE", "@original", 204),
    ]
    assert outcome.callback.json == {"type": CALLBACK_DEFERRED}
    assert outcome.calls[1].json["content"] == ANSWERED_PRIVATELY
    assert outcome.calls[2].json["flags"] == FLAG_EPHEMERAL


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            AttachmentSpec("big.wav", "audio/wav", b"RIFF", size=15_000_000),
            "I can't use that voice clip: it is 15.0 MB; the limit is 10 MB.",
        ),
        (
            AttachmentSpec("cat.png", "image/png", b"\x89PNG"),
            "I can't use that voice clip: it is not an audio file (image/png)",
        ),
        (
            AttachmentSpec("notes", None, b"plain"),
            "it is not an audio file (unknown type)",
        ),
    ],
)
async def test_oversized_or_non_audio_attachments_are_never_downloaded(
    bot: Bot, spec: AttachmentSpec, expected: str
) -> None:
    said = await bot.command("say", [{"name": "text", "value": "Hi"}], attachments={"voice": spec})
    saved = await bot.command("voice", subcommand="set", attachments={"attachment": spec})
    for outcome in (said, saved):
        assert outcome.callback.json["type"] == CALLBACK_MESSAGE  # refused before deferring
        assert expected in outcome.private_text()
    assert sum(bot.standin.cdn_downloads.values()) == 0


async def test_corrupt_clip_gets_a_clear_reply_and_the_bot_keeps_serving(bot: Bot) -> None:
    corrupt = AttachmentSpec("me.ogg", "audio/ogg", b"OggS" + b"\x00garbage" * 500)
    outcome = await bot.command("voice", subcommand="set", attachments={"attachment": corrupt})
    assert outcome.callback.json == {"type": CALLBACK_DEFERRED, "data": {"flags": FLAG_EPHEMERAL}}
    assert "I can't use that voice clip: the voice clip could not be decoded" in (
        outcome.private_text()
    )
    assert sum(bot.standin.cdn_downloads.values()) == 1
    after = await bot.say("Still serving.")
    assert decoded(after.upload()).duration > 0.5


# --- voices ----------------------------------------------------------------------------------


async def test_set_use_forget_and_default_a_voice(bot: Bot) -> None:
    await consented_before(bot.flow, "discord", str(USER), clip("ogg_opus"))
    spec = AttachmentSpec("me.ogg", "audio/ogg", clip("ogg_opus"))
    saved = await bot.command("voice", subcommand="set", attachments={"attachment": spec})
    text = saved.private_text()
    assert text.startswith("Saved") and "voice cloning is off right now" in text
    assert sum(bot.standin.cdn_downloads.values()) == 1
    spoken = await bot.say("My voice?")
    assert "voice cloning is off right now" in spoken.message()["content"]
    forgot = await bot.command("voice", subcommand="forget")
    assert "deleted your 1 saved voice clip(s)" in forgot.private_text()
    again = await bot.command("voice", subcommand="forget")
    assert again.private_text() == "There was nothing of yours to delete."
    back = await bot.command("voice", subcommand="default")
    assert back.private_text() == "Back to the built-in voice."
    assert not (await bot.flow.voices.forget("discord", str(USER))).anything_removed


# --- limits and faults -----------------------------------------------------------------------


async def test_rate_limit_says_when_to_try_again(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    limited = storage_settings.model_copy(update={"ratelimit_burst": 2, "ratelimit_per_minute": 6})
    async with running_bot(redis_client, limited, service) as bot:
        for n in range(2):
            assert (await bot.say(f"Number {n}.")).upload()
        refused = await bot.say("One too many.")
        # 6 per minute: the next token is at most 10 s away.
        assert re.search(r"try again in (10|9|8) s\.", refused.private_text())
        # Refused before "thinking…": one private answer, no public trace, no clean-up.
        assert [c.path.rsplit("/", 1)[-1] for c in refused.calls] == ["callback"]
        assert refused.callback.json["type"] == 4  # a message at once, not a deferral
        other_user = await bot.say("Someone else.", user_id=USER + 1)
        assert other_user.upload()


async def test_tts_service_down_gets_a_reply_and_the_bot_keeps_serving(
    redis_client: Redis, open_storage: StorageSettings, piper_engine: PiperEngine
) -> None:
    with running_service(piper_engine) as doomed:
        pass  # stopped: its port now refuses connections
    async with running_bot(redis_client, open_storage, doomed) as bot:
        reply = await bot.say("Anyone?")
        assert "voice engine is unavailable" in reply.private_text()
        assert "/say" in (await bot.command("help")).private_text()
        assert is_connected(bot.client)


async def test_redis_down_still_answers_uncached(service: Service) -> None:
    server = start_valkey()
    storage = make_settings(f"redis://127.0.0.1:{server.port}", ratelimit_enabled=False)
    redis = make_client(f"redis://127.0.0.1:{server.port}", storage)
    try:
        async with running_bot(redis, storage, service) as bot:
            assert (await bot.say("Before.")).upload()
            server.stop()
            before = bot.service.counter.tts_requests
            for _ in range(2):
                reply = await bot.say("Redis is gone.")
                assert decoded(reply.upload()).duration > 0.5
            assert bot.service.counter.tts_requests == before + 2  # uncached, but answered
    finally:
        await redis.aclose()
        if server.is_running():
            server.stop()


async def test_discord_rate_limits_are_waited_out(bot: Bot) -> None:
    bot.standin.fail_next("/messages/@original", 429, method="PATCH")
    outcome = await bot.say("Rate limited once.")
    edits = [c for c in outcome.calls if c.method == "PATCH"]
    assert [c.status for c in edits] == [429, 200]
    assert decoded(edits[1].files[0]).subtype == "OPUS"
    assert outcome.message()["attachments"][0]["filename"] == "say.ogg"


async def test_a_failed_answer_still_gets_one_private_reply(
    bot: Bot, caplog: pytest.LogCaptureFixture
) -> None:
    bot.standin.fail_next("/messages/@original", 400, method="PATCH")
    outcome = await bot.say("This answer is refused once.")
    assert outcome.private_text() == (
        "Something went wrong on my side — please try again in a moment."
    )
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1, errors  # logged once, with the command and the user
    assert f"/say for user {USER}" in errors[0].getMessage() and errors[0].exc_info


# --- running ---------------------------------------------------------------------------------


async def test_sharded_client_answers_on_the_shard_that_owns_the_guild(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with running_bot(
        redis_client, open_storage, service, shards=2, make=QuickShards, discord_shards=2
    ) as bot:
        assert isinstance(bot.client, ShardedSayBot)
        assert sorted(i["shard"] for i in bot.standin.identifies) == [[0, 2], [1, 2]]
        assert decoded((await bot.say("Sharded.")).upload()).duration > 0.5
    assert isinstance(build_client(bot.settings, bot.flow), ShardedSayBot)


async def test_stop_finishes_commands_in_flight_and_turns_new_ones_away(bot: Bot) -> None:
    slow = await bot.standin.send_slash_command(
        "say",
        [{"name": "text", "value": "This request is still being spoken when we stop. " * 6}],
        user_id=USER,
    )
    await bot.standin.wait_for("/callback", timeout=10)  # deferred: synthesis is running
    stopping = asyncio.create_task(stop_discord(bot.client))
    await asyncio.sleep(0)
    late = await bot.standin.send_slash_command("help", user_id=USER)
    await asyncio.wait_for(stopping, 30)
    assert bot.client.is_closed() and not is_connected(bot.client)
    answered = Outcome(bot.standin.calls(slow["token"]), bot.standin.interaction_messages(slow))
    assert decoded(answered.upload()).duration > 5
    turned_away = Outcome(bot.standin.calls(late["token"]), bot.standin.interaction_messages(late))
    assert turned_away.private_text() == TURNED_AWAY


async def test_stop_tells_users_of_commands_it_cannot_wait_for(bot: Bot) -> None:
    slow = await bot.standin.send_slash_command(
        "say", [{"name": "text", "value": "A long answer. " * 60}], user_id=USER
    )
    await bot.standin.wait_for("/callback", timeout=10)  # deferred: synthesis is running
    await asyncio.wait_for(stop_discord(bot.client, drain_timeout_s=0.1), 30)
    assert bot.client.is_closed() and not bot.client.in_flight
    gave_up = Outcome(bot.standin.calls(slow["token"]), bot.standin.interaction_messages(slow))
    assert gave_up.private_text() == GAVE_UP
    assert not [f for c in gave_up.calls for f in c.files]  # no audio after giving up
    # The synthesis itself outlives the command (others may share it): it still lands.
    before = bot.service.counter.tts_requests
    await bot.flow.drain()
    again = await bot.flow.say(SayRequest("discord", str(USER), "1", "A long answer. " * 60))
    assert again.from_cache and bot.service.counter.tts_requests == before


async def test_saybot_run_starts_discord_when_its_token_is_set(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with (
        DiscordStandin() as standin,
        discord_pointed_at(standin),
        say_flow(redis_client, open_storage, service.url) as flow,
    ):
        async with contextlib.AsyncExitStack() as stack:
            settings = bot_settings(discord_bot_token=SecretStr(standin.token))
            started = await start_adapters(stack, settings, flow)
            assert list(started) == ["discord"]
            async with asyncio.timeout(10):  # discord.py waits 2 s for guilds to stream in
                while True:
                    if started["discord"]():
                        break
                    await asyncio.sleep(0.05)
            await standin.send_slash_command("help", user_id=USER)
            reply = await standin.wait_for("/callback", timeout=5)
            assert reply.json["data"]["flags"] == FLAG_EPHEMERAL
        assert not started["discord"]()


async def test_saybot_run_serves_discord_and_telegram_in_one_loop(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with (
        DiscordStandin() as standin,
        discord_pointed_at(standin),
        TelegramStandin() as tg,
        say_flow(redis_client, open_storage, service.url) as flow,
    ):
        async with contextlib.AsyncExitStack() as stack:
            settings = bot_settings(
                discord_bot_token=SecretStr(standin.token),
                telegram_bot_token=SecretStr(TELEGRAM_TOKEN),
                telegram_api_base_url=tg.base_url,
                telegram_file_base_url=tg.base_file_url,
            )
            started = await start_adapters(stack, settings, flow)
            assert sorted(started) == ["discord", "telegram"]
            async with asyncio.timeout(10):  # discord.py waits 2 s for guilds to stream in
                while True:
                    if all(connected() for connected in started.values()):
                        break
                    await asyncio.sleep(0.05)
            before = service.counter.tts_requests
            tg.send_command(USER, USER, "say", "Both platforms, one cache.")
            voice = await tg.wait_for("sendVoice", timeout=30)
            payload = await standin.send_slash_command(
                "say", [{"name": "text", "value": "Both platforms,   one cache."}], user_id=USER
            )
            answer = await standin.wait_for(  # a hit: the interaction's one response
                lambda c: payload["token"] in c.path and bool(c.files), timeout=30
            )
            assert answer.files[0].data == voice.files["voice"]  # one synthesis served both
            assert service.counter.tts_requests == before + 1
        assert not any(connected() for connected in started.values())


# --- never a late answer: a clip that does not arrive ----------------------------------------


async def test_a_clip_download_that_hangs_is_answered_at_once(
    redis_client: Redis, open_storage: StorageSettings, piper_engine: PiperEngine
) -> None:
    """The CDN hangs: "thinking…" turns into "send it again" once CLIP_DOWNLOAD_TIMEOUT_S is
    up (discord.py itself would wait 300 s), and the next command is served."""
    limits = bot_settings(clip_download_timeout_s=1).clip_limits()
    voice = AttachmentSpec("me.ogg", "audio/ogg", clip("ogg_opus"))
    options = [{"name": "text", "value": "In my own voice."}]
    with running_service(CloningPiper(piper_engine)) as cloning:
        async with running_bot(redis_client, open_storage, cloning, clip_limits=limits) as bot:
            cdn = bot.standin.hold_cdn()  # held until the test lets go, however long
            try:
                hung = await bot.command("say", options, attachments={"voice": voice}, timeout=20)
                assert bot.standin.cdn_held == 1  # the download had begun, and hung
            finally:
                cdn.set()
            assert hung.callback.json == {"type": CALLBACK_DEFERRED}  # "thinking…" first
            assert hung.private_text() == (
                "I couldn't download your clip (it did not arrive within 1 s) "
                "— please send it again."
            )
            assert cloning.counter.tts_requests == 0
            await consented_before(bot.flow, "discord", str(USER), clip("ogg_opus"))
            again = await bot.command("say", options, attachments={"voice": voice})
            assert decoded(again.upload()).duration > 0.5
            assert cloning.counter.tts_requests == 1
