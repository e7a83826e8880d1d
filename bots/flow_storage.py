"""What ``SayFlow.over_redis`` builds: each store of the flow over Redis, sharing one metrics.

Kept apart from ``bots.say`` so the flow's module reads as the pipeline it is; this one only
wires storage: ``redis`` holds the durable data, ``cache_redis`` the audio cache and the ids
of files a platform already holds (default: ``redis``).
"""

from __future__ import annotations

from typing import TypedDict

from bots.community import Community, OperatorRules
from bots.engine_identity import EngineIdentity
from bots.errors import (
    InvalidInput,
    TTSBusy,
    TTSTimeout,
    TTSUnavailable,
    VoiceClipRejected,
    VoiceCloningUnavailable,
    is_transient,
)
from bots.quotas import Quotas
from bots.tts_client import TTSClient
from storage.cache import AudioCache
from storage.chat_settings import ChatSettingsStore
from storage.client import RedisClient
from storage.clip_cipher import ClipCipher
from storage.consents import ConsentStore
from storage.engine_identity import EngineIdentityStore
from storage.metrics import StorageMetrics
from storage.ratelimit import RateLimiter
from storage.sent_files import SentFiles
from storage.settings import StorageSettings
from storage.singleflight import error_rebuilder
from storage.spend import SpendLedger
from storage.usage import UsageRecorder
from storage.voices import VoiceStore


class FlowStorage(TypedDict):
    tts: TTSClient
    cache: AudioCache
    voices: VoiceStore
    limiter: RateLimiter
    usage: UsageRecorder
    engine: EngineIdentity
    consents: ConsentStore
    community: Community
    quotas: Quotas
    sent_files: SentFiles


def flow_storage(
    redis: RedisClient,
    settings: StorageSettings,
    tts: TTSClient,
    *,
    metrics: StorageMetrics,
    operator: OperatorRules,
    engine_info_max_age_s: float,
    cache_redis: RedisClient | None,
    clip_cipher: ClipCipher | None,
) -> FlowStorage:
    # Waiters of a failed single-flight synthesis raise the same error the leader got.
    rebuild = error_rebuilder(
        TTSUnavailable,
        TTSTimeout,
        TTSBusy,
        InvalidInput,
        VoiceClipRejected,
        VoiceCloningUnavailable,
    )
    return FlowStorage(
        tts=tts,
        cache=AudioCache(
            cache_redis or redis,
            settings,
            metrics,
            data_redis=redis,
            rebuild_error=rebuild,
            is_transient=is_transient,
        ),
        voices=VoiceStore(redis, settings, metrics, cache_redis=cache_redis, cipher=clip_cipher),
        limiter=RateLimiter(redis, settings, metrics),
        usage=UsageRecorder(redis, settings, metrics),
        engine=EngineIdentity(
            tts.fetch_engine_info,
            EngineIdentityStore(redis, metrics),
            max_age_s=engine_info_max_age_s,
        ),
        consents=ConsentStore(redis, settings, metrics),
        community=Community(ChatSettingsStore(redis, metrics), operator, settings),
        quotas=Quotas(operator.quotas, SpendLedger(redis, metrics)),
        sent_files=SentFiles(cache_redis or redis, settings, metrics),
    )
