"""Community and operator controls, and GPU-time limits, through the flow itself.

Real Valkey and real services: Piper (costs nothing), Piper under a paid GPU engine's name
(``RentedGPU``: its syntheses count against the quotas) and Piper that claims it can clone
(``CloningPiper``). Settings are changed through ``Community.change``, as ``/settings`` does.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from pydantic import ValidationError
from redis.asyncio import Redis

from bots.chosen_voice import VoiceSource
from bots.community import (
    CLONING_OFF_ON_BOT,
    SAVED_VOICES_OFF_HERE,
    OperatorRules,
)
from bots.engine_identity import EngineIdentity
from bots.errors import (
    CloningDisabled,
    InvalidInput,
    InvalidSetting,
    QuotaExceeded,
    RateLimited,
    TextBlocked,
    UserBlocked,
)
from bots.fallback import Fallback
from bots.messages import error_text
from bots.quotas import QuotaLimits, costs_gpu, first_of_next_month, next_midnight
from bots.say import SayFlow, SayRequest
from bots.settings import BotSettings
from bots.settings_changes import SettingChange, parse_setting, phrases
from bots.tts_client import TTSClient
from bots.word_filter import WordFilter, fold
from storage import keys
from storage.settings import StorageSettings
from storage.spend import SpendLedger
from storage.usage import UsageReader, utc_today
from tests.bots.harness import (
    FAST_RETRY,
    RentedGPU,
    Service,
    running_service,
    said_with_consent,
    saved_with_consent,
    say_flow,
)
from tests.tts_helpers import API_TOKEN
from tests.tts_service.audio_samples import clip
from tests.tts_service.engine_wrappers import CloningPiper
from tts_service.engines.piper import PiperEngine

GROUP = "-100"  # a community: a Telegram group's id, a Discord server's


@dataclass
class CountingClip:
    """A clip in memory that counts how often it was downloaded."""

    data: bytes
    sender_id: str
    content_type: str | None = "audio/ogg"
    declared_seconds: float | None = 3.0
    forwarded: bool = False
    reads: int = 0

    @property
    def declared_bytes(self) -> int:
        return len(self.data)

    async def read(self, max_bytes: int, timeout_s: float) -> bytes:
        self.reads += 1
        return self.data


def request(
    text: str = "Community test.",
    user: str = "1",
    server: str | None = GROUP,
    clip_source: CountingClip | None = None,
    **params: float,
) -> SayRequest:
    return SayRequest(
        platform="test",
        user_id=user,
        chat_id=server or user,
        text=text,
        params=params,
        clip=clip_source,
        server_id=server,
    )


async def change(flow: SayFlow, *changes: SettingChange, server: str = GROUP) -> None:
    await flow.community.change("test", server, changes)


@pytest.fixture(scope="module")
def gpu(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(RentedGPU(piper_engine)) as running:
        yield running


@pytest.fixture(scope="module")
def cloning_service(piper_engine: PiperEngine) -> Iterator[Service]:
    with running_service(CloningPiper(piper_engine)) as running:
        yield running


# --- blocked words: matching -----------------------------------------------------------------


def test_blocked_words_match_whole_words_without_case_or_accents() -> None:
    words = WordFilter.of(["darn", "Bad Word", "crème"])
    assert fold("ÉCOLE Straße") == "ecole strasse"
    for text in ["Darn!", "oh, DÁRN it", "a bad, WORD here", "creme brulee", "CRÈME"]:
        assert words.blocks(text), text
    for text in ["darnation", "bad words", "badword", "cremes", "class"]:
        assert not words.blocks(text), text
    assert not WordFilter.of(["ass"]).blocks("a class act")
    assert WordFilter.of(["!!!", "  "]).phrases == frozenset()  # nothing to match: dropped


def test_settings_are_parsed_and_every_bad_value_is_one_sentence() -> None:
    assert parse_setting("") is None
    assert parse_setting("cloning OFF") == SettingChange("cloning", False)
    assert parse_setting("saved-voices on") == SettingChange("saved_voices", True)
    assert parse_setting("max_text 300") == SettingChange("max_text", 300.0)
    assert parse_setting("rate off") == SettingChange("rate", None)
    assert parse_setting("exaggeration 0.7") == SettingChange("exaggeration", 0.7)
    assert parse_setting('block darn "oh heck" “très bien”') == SettingChange(
        "block", words=("darn", "oh heck", "très bien")
    )
    assert phrases("don't stop") == ("don't", "stop")
    for text, sentence in [
        ("volume 11", "I can't change that: there is no setting 'volume'; the settings are"),
        ("cloning maybe", "I can't change that: cloning is on or off, e.g. /settings cloning off."),
        ("rate fast", "I can't change that: rate is a whole number of requests a minute per user"),
    ]:
        with pytest.raises(InvalidSetting) as refused:
            parse_setting(text)
        text = error_text(refused.value)
        assert text.startswith(sentence) and text.endswith(".")
        assert ". " not in text.replace("e.g. ", ""), "one sentence"


async def test_out_of_range_settings_change_nothing(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with say_flow(redis_client, open_storage, service.url) as flow:
        for bad in [
            SettingChange("max_text", 1001),
            SettingChange("rate", 2.5),
            SettingChange("quota", -1),
            SettingChange("exaggeration", 3.0),
            SettingChange("block", words=("?!",)),
            SettingChange("block"),
        ]:
            with pytest.raises(InvalidSetting):
                await change(flow, SettingChange("cloning", False), bad)
        assert (await flow.community.view("test", GROUP)).chat.cloning  # nothing was stored


# --- the operator's rules --------------------------------------------------------------------


def test_the_operators_controls_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    words = tmp_path / "blocked.txt"
    words.write_text("# one a line\nDarn\n\n  oh heck  \n", encoding="utf-8")
    for name, value in {
        "BLOCKED_WORDS_FILE": str(words),
        "CLONING_ENABLED": "false",
        "BLOCKED_USERS": "telegram:1, discord:2",
        "QUOTA_USER_GPU_S_PER_DAY": "60",
        "QUOTA_SERVER_GPU_S_PER_DAY": "600",
        "GPU_BUDGET_USD_PER_MONTH": "50",
    }.items():
        monkeypatch.setenv(name, value)
    rules = BotSettings(_env_file=None).operator_rules(price_per_gpu_second=0.001)  # type: ignore[call-arg]
    assert rules.blocked_words.phrases == {"darn", "oh heck"}
    assert not rules.cloning_enabled
    assert rules.blocked_users == {"telegram:1", "discord:2"}
    assert rules.quotas == QuotaLimits(60, 600, 50, 0.001)
    assert rules.quotas.month_s == pytest.approx(50_000)
    monkeypatch.setenv("BLOCKED_WORDS_FILE", str(tmp_path / "missing.txt"))
    with pytest.raises(ValidationError, match="blocked_words_file"):
        BotSettings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("BLOCKED_WORDS_FILE", str(words))
    monkeypatch.setenv("BLOCKED_USERS", "123")
    with pytest.raises(ValidationError, match="'123' is not platform:user_id"):
        BotSettings(_env_file=None)  # type: ignore[call-arg]


async def test_a_blocked_user_gets_one_sentence_and_nothing_else_happens(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    operator = OperatorRules(blocked_users=frozenset({"test:9"}))
    async with say_flow(redis_client, storage_settings, service.url, operator=operator) as flow:
        before = service.counter.tts_requests
        sent = CountingClip(clip("ogg_opus"), "9")
        with pytest.raises(UserBlocked) as blocked:
            await flow.say(request(user="9", clip_source=sent))
        with pytest.raises(UserBlocked):
            await flow.save_voice("test", "9", sent, GROUP)
        assert error_text(blocked.value) == "This bot doesn't take requests from you."
        assert sent.reads == 0 and service.counter.tts_requests == before
        assert not await redis_client.exists(keys.rate_bucket("test", "9"))
        assert (await flow.say(request(user="8"))).audio  # everyone else is answered


async def test_the_operators_blocked_words_apply_everywhere_before_anything_else(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    operator = OperatorRules(blocked_words=WordFilter.of(["forbidden fruit", "zonk"]))
    async with say_flow(redis_client, storage_settings, service.url, operator=operator) as flow:
        before = service.counter.tts_requests
        for server in (GROUP, None):
            with pytest.raises(TextBlocked) as blocked:
                await flow.say(request("Try the FORBIDDEN, fruit!", server=server))
        assert error_text(blocked.value) == (
            "I won't say that: it has a word that is blocked on this bot."
        )
        assert service.counter.tts_requests == before
        assert not await redis_client.exists(keys.rate_bucket("test", "1"))  # no token spent
        assert (await flow.say(request("Forbidden fruits are fine."))).audio


async def test_cloning_off_on_the_bot_downloads_no_clip_and_keeps_saved_voices_silent(
    redis_client: Redis, open_storage: StorageSettings, cloning_service: Service
) -> None:
    async with say_flow(redis_client, open_storage, cloning_service.url) as flow:
        await saved_with_consent(flow, "test", "1", clip("wav"))  # saved while cloning was on
    operator = OperatorRules(cloning_enabled=False)
    async with say_flow(redis_client, open_storage, cloning_service.url, operator=operator) as flow:
        sent = CountingClip(clip("ogg_opus"), "1")
        with pytest.raises(CloningDisabled) as refused:
            await flow.say(request(server=None, clip_source=sent))
        with pytest.raises(CloningDisabled):
            await flow.save_voice("test", "1", sent)
        assert sent.reads == 0
        assert error_text(refused.value) == (
            "Voice cloning is turned off on this bot — send your text without a clip."
        )
        spoken = await flow.say(request("My saved voice, please.", server=None))
        assert (spoken.voice, spoken.note) == (VoiceSource.BUILT_IN, CLONING_OFF_ON_BOT)


# --- a community's settings ------------------------------------------------------------------


async def test_a_communitys_blocked_words_and_longest_text_apply_only_there(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with say_flow(redis_client, open_storage, service.url) as flow:
        await change(
            flow,
            SettingChange("block", words=("Heck", "oh dear")),
            SettingChange("max_text", 30),
        )
        with pytest.raises(TextBlocked) as blocked:
            await flow.say(request("What the HÉCK."))
        assert error_text(blocked.value) == "I won't say that: it has a word that is blocked here."
        with pytest.raises(TextBlocked):
            await flow.say(request("Oh   dear, oh dear."))
        with pytest.raises(InvalidInput) as too_long:
            await flow.say(request("This sentence is longer than thirty characters."))
        assert error_text(too_long.value) == (
            "I can't say that: the text is 47 characters long; the limit here is 30."
        )
        assert (await flow.say(request("What the heck.", server=None))).audio  # elsewhere: fine
        assert (await flow.say(request("Heckle is another word."))).audio
        await change(flow, SettingChange("unblock", words=("heck",)))
        assert (await flow.say(request("What the heck."))).audio


async def test_a_communitys_default_options_fill_in_only_what_the_user_left_out(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with say_flow(redis_client, open_storage, service.url) as flow:
        await change(flow, SettingChange("exaggeration", 0.7))
        first = await flow.say(request("Defaults apply."))
        assert not first.from_cache
        # The same words with the default spelled out, outside the community: the same answer.
        spelled_out = await flow.say(request("Defaults apply.", server=None, exaggeration=0.7))
        assert spelled_out.from_cache and spelled_out.audio == first.audio
        own = await flow.say(request("Defaults apply.", exaggeration=1.0))
        assert not own.from_cache  # the user's own value wins


async def test_a_community_may_turn_cloning_and_saved_voices_off_for_itself(
    redis_client: Redis, open_storage: StorageSettings, cloning_service: Service
) -> None:
    async with say_flow(redis_client, open_storage, cloning_service.url) as flow:
        await saved_with_consent(flow, "test", "1", clip("wav"))
        await change(flow, SettingChange("saved_voices", False))
        here = await flow.say(request("Which voice?"))
        assert (here.voice, here.note) == (VoiceSource.BUILT_IN, SAVED_VOICES_OFF_HERE)
        with pytest.raises(CloningDisabled) as no_saving:
            await flow.save_voice("test", "1", CountingClip(clip("wav"), "1"), GROUP)
        assert error_text(no_saving.value) == "The admins here have turned saved voices off."
        assert (await flow.say(request("Which voice?", server=None))).voice is VoiceSource.SAVED
        await change(flow, SettingChange("cloning", False))
        sent = CountingClip(clip("ogg_opus"), "1")
        with pytest.raises(CloningDisabled) as refused:
            await flow.say(request(clip_source=sent))
        assert error_text(refused.value) == "The admins here have turned voice cloning off."
        assert sent.reads == 0


async def test_a_communitys_rate_applies_there_even_with_the_bots_own_limit_off(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    async with say_flow(redis_client, open_storage, service.url) as flow:
        await change(flow, SettingChange("rate", 1))
        await flow.say(request("One a minute."))
        with pytest.raises(RateLimited) as limited:
            await flow.say(request("Two a minute."))
        assert 50 < limited.value.retry_after_s <= 60
        assert (await flow.say(request("Elsewhere.", user="2", server="-200"))).audio


async def test_a_community_can_only_lower_the_bots_rate(
    redis_client: Redis, storage_settings: StorageSettings, service: Service
) -> None:
    strict = storage_settings.model_copy(update={"ratelimit_per_minute": 2.0, "ratelimit_burst": 1})
    async with say_flow(redis_client, strict, service.url) as flow:
        await change(flow, SettingChange("rate", 60))
        view = await flow.community.view("test", GROUP)
        assert (view.rate_per_minute, view.bot_rate_per_minute) == (2.0, 2.0)
        await flow.say(request("First."))
        with pytest.raises(RateLimited):
            await flow.say(request("Second."))


# --- GPU-time limits -------------------------------------------------------------------------


async def test_past_a_users_daily_quota_only_cached_audio_answers(
    redis_client: Redis, open_storage: StorageSettings, gpu: Service
) -> None:
    operator = OperatorRules(quotas=QuotaLimits(user_s_per_day=0.0001))
    async with say_flow(redis_client, open_storage, gpu.url, operator=operator) as flow:
        said = await flow.say(request("Spend a little GPU time."))
        spent = await SpendLedger(redis_client).spent("test", "1", GROUP)
        assert spent.user_s > 0 and spent.server_s == spent.user_s == spent.month_s
        again = await flow.say(request("Spend a little GPU time."))
        assert again.from_cache and again.audio == said.audio
        before = gpu.counter.tts_requests
        with pytest.raises(QuotaExceeded) as over:
            await flow.say(request("Something new."))
        assert gpu.counter.tts_requests == before
        assert (over.value.scope, over.value.resets_at) == (
            "user",
            next_midnight(dt.datetime.now(dt.UTC)),
        )
        text = error_text(over.value)
        assert text.startswith("You've used today's voice-engine time — I can still answer")
        assert "resets at midnight UTC (in " in text
        assert (await flow.say(request("Something new.", user="2"))).audio  # others still can


async def test_a_communitys_quota_is_its_own_under_the_operators(
    redis_client: Redis, open_storage: StorageSettings, gpu: Service
) -> None:
    async with say_flow(redis_client, open_storage, gpu.url) as flow:
        await change(flow, SettingChange("quota", 1))
        await SpendLedger(redis_client).add("test", "5", GROUP, 1.0)  # spent earlier today
        with pytest.raises(QuotaExceeded) as over:
            await flow.say(request("Anyone here?", user="6"))
        assert over.value.scope == "server"
        assert error_text(over.value).startswith("Everyone here together has used today's")
        assert (await flow.say(request("Anyone here?", user="6", server=None))).audio
    capped = OperatorRules(quotas=QuotaLimits(server_s_per_day=0.5))
    async with say_flow(redis_client, open_storage, gpu.url, operator=capped) as flow:
        await change(flow, SettingChange("quota", 600), server="-300")
        view = await flow.community.view("test", "-300")
        assert (view.chat.quota_s, view.quota_s, view.bot_quota_s) == (600, 0.5, 0.5)


async def test_the_monthly_budget_stops_gpu_syntheses_until_the_first(
    redis_client: Redis, open_storage: StorageSettings, gpu: Service
) -> None:
    budget = QuotaLimits(budget_usd_per_month=0.0001, price_per_gpu_second=1.0)
    async with say_flow(
        redis_client, open_storage, gpu.url, operator=OperatorRules(quotas=budget)
    ) as flow:
        await flow.say(request("The last affordable words."))
        with pytest.raises(QuotaExceeded) as over:
            await flow.say(request("One word too many.", user="7", server=None))
    first = first_of_next_month(dt.datetime.now(dt.UTC))
    assert (over.value.scope, over.value.resets_at) == ("budget", first)
    assert error_text(over.value) == (
        "This bot has used its voice-engine budget for the month — I can still answer with "
        f"audio I've made before, and the budget renews on {first.day} {first:%B} (UTC)."
    )


async def test_the_cpu_engine_costs_nothing_and_is_never_limited(
    redis_client: Redis, open_storage: StorageSettings, service: Service
) -> None:
    assert not costs_gpu("piper") and costs_gpu(RentedGPU.NAME)
    operator = OperatorRules(quotas=QuotaLimits(user_s_per_day=0.0001))
    async with say_flow(redis_client, open_storage, service.url, operator=operator) as flow:
        for n in range(3):
            assert not (await flow.say(request(f"Free words, take {n}."))).from_cache
    assert await SpendLedger(redis_client).spent("test", "1", GROUP) == (
        await SpendLedger(redis_client).spent("test", "nobody", None)
    )
    assert not await redis_client.keys("saybot:v1:spend:*")


@contextlib.asynccontextmanager
async def flow_with_stand_in(
    redis: Redis, storage: StorageSettings, gpu_url: str, local_url: str, operator: OperatorRules
) -> AsyncIterator[SayFlow]:
    primary = TTSClient(gpu_url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    local = TTSClient(local_url, API_TOKEN, read_timeout_s=60, retry=FAST_RETRY)
    fallback = Fallback(local, EngineIdentity(local.fetch_engine_info), after_s=30)
    flow = SayFlow.over_redis(redis, storage, primary, fallback=fallback, operator=operator)
    try:
        yield flow
    finally:
        await flow.drain()
        await primary.aclose()
        await local.aclose()


async def test_past_a_limit_the_stand_in_voice_answers_when_it_is_on(
    redis_client: Redis, open_storage: StorageSettings, gpu: Service, service: Service
) -> None:
    operator = OperatorRules(quotas=QuotaLimits(user_s_per_day=0.0001))
    async with flow_with_stand_in(
        redis_client, open_storage, gpu.url, service.url, operator
    ) as flow:
        assert (await flow.say(request("Spend it."))).voice is VoiceSource.BUILT_IN
        stood_in = await flow.say(request("And then some."))
    assert stood_in.voice is VoiceSource.STAND_IN and stood_in.engine == "piper"
    assert stood_in.note == "today's GPU time is spent; the usual voice is back at midnight UTC"


# --- counted for the dashboard ---------------------------------------------------------------


async def test_cloned_requests_consents_and_forgets_are_counted(
    redis_client: Redis, open_storage: StorageSettings, cloning_service: Service
) -> None:
    async with say_flow(redis_client, open_storage, cloning_service.url) as flow:
        sent = CountingClip(clip("ogg_opus"), "1")
        cloned = await said_with_consent(flow, request("In my voice.", clip_source=sent))
        assert cloned.voice is VoiceSource.ATTACHED
        await flow.say(request("In the built-in voice."))
        await flow.forget_voice("test", "1")
        await flow.settled()
    today = utc_today()
    totals = (await UsageReader(redis_client, open_storage).summary(today, today)).totals
    assert (totals.requests, totals.cloned, totals.consents, totals.forgets) == (2, 1, 1, 1)
    users = await redis_client.hgetall(keys.usage_users(today.isoformat()))
    assert not users, "a forget leaves no per-user trace, not even the forget"
