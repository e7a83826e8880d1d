"""Every Redis key and every default TTL of saybot, in one place (as ``arq/constants.py`` does).

All keys start with ``saybot:v1:`` so one Redis can be shared with other apps and a
format change can move to ``v2`` without reading old values.

Redis Cluster (``REDIS_CLUSTER``): no atomic operation needs two keys in different slots.
Keys that one Lua script touches together share a ``{hash tag}``, so they hash to one slot:

    {<voice_id>}  the voice's clip, owners, audio index and tombstone: the index script
                  (storage.cache) and the release script (storage.voice_release)
    {login}       the admin login throttle's two counters: its charge and refund scripts
    {saybot:v1:audio:<sha256>}  an answer's file ids, read in one round trip with the answer

Every other script and every MULTI…EXEC touches one key (rate bucket, lock renew/release,
a community's settings, a user's consents). Operations over several untagged keys (a
user's keys on save and forget, usage, spend) are non-transactional pipelines, which the
cluster client splits by node: each command is atomic on its own, as on one server, and a
failure mid-way is retried by the caller (forget) or lost with the breaker (counters). No
multi-key command (MGET, multi-key DEL…) spans keys of different slots: spend reads are
pipelined GETs. tests/storage/test_slots.py checks all of this on the wire.

    saybot:v1:audio:<sha256>                      cached audio (string: header + bytes)
    saybot:v1:sent:{saybot:v1:audio:<sha256>}     that answer's platform file ids (hash: sender →
                                                  "<audio sha256>:<file id>"; the audio's TTL)
    saybot:v1:sf:lock:<sha256>                    single-flight lock (token, PX)
    saybot:v1:sf:outcome:<sha256>:<token>         why a lock holder gave up (JSON, PX)
    saybot:v1:voice:{<voice_id>}:clip             reference clip bytes (idle TTL)
    saybot:v1:voice:{<voice_id>}:owners           set of "platform:user_id" (idle TTL)
    saybot:v1:voice:{<voice_id>}:audio            set of audio keys made with the voice
    saybot:v1:voice:{<voice_id>}:forgotten        tombstone: the voice was just forgotten (EX)
    saybot:v1:user:<platform>:<user_id>:voices    set of voice ids the user saved (idle TTL)
    saybot:v1:user:<platform>:<user_id>:attached  set of voice ids the user sent for one request
                                                  without saving them (idle TTL; ids only)
    saybot:v1:user:<platform>:<user_id>:default   the user's default voice id
    saybot:v1:user:<platform>:<user_id>:consents  the user's consent records, by voice id
    saybot:v1:usage:day:<YYYY-MM-DD>              hash of per-day totals and per-platform counts
    saybot:v1:usage:users:<YYYY-MM-DD>            hash of per-user counts for the day
    saybot:v1:rate:<platform>:<user_id>           token bucket state (hash)
    saybot:v1:engine                              the TTS engine's identity last seen (JSON)
    saybot:v1:admin:session:<sha256>              an admin dashboard session, under the sha256 of
                                                  the id its cookie holds (JSON, EX)
    saybot:v1:admin:{login}:failures:all          failed admin logins in this window (int, PX);
                                                  {login}: one slot with the per-client count
    saybot:v1:admin:{login}:failures:client:<sha256>  the same from one client address (int, PX)
    saybot:v1:chat:<platform>:<chat_id>:settings  a community's settings, set by its admins (hash;
                                                  durable: no TTL)
    saybot:v1:spend:user:<platform>:<user_id>:<YYYY-MM-DD>      GPU seconds of one user that UTC
                                                  day (float, EX)
    saybot:v1:spend:server:<platform>:<server_id>:<YYYY-MM-DD>  GPU seconds of one community
                                                  that UTC day (float, EX)
    saybot:v1:spend:month:<YYYY-MM>               GPU seconds of everyone that UTC month (float, EX)
"""

from __future__ import annotations

import re

PREFIX = "saybot:v1:"

# --- defaults (StorageSettings can override each) ---------------------------------------------
AUDIO_TTL_S = 30 * 86_400  # a month: long enough for a meme to come back, short enough to forget
AUDIO_MAX_ENTRY_BYTES = 5 * 1024 * 1024  # ~90 s of 24 kHz WAV; OGG/Opus answers are ~100× smaller
LOCK_TTL_MS = 10_000  # a dead holder frees its key within 10 s; a live one renews every third
LOCK_WAIT_TIMEOUT_S = 240.0  # above the bots' 180 s TTS read timeout: a cold GPU is slow, not dead
OUTCOME_TTL_MS = 30_000  # waiters poll every ≤ 100 ms; 30 s covers a waiter on a stalled loop
VOICE_MAX_BYTES = 2 * 1024 * 1024  # a minute of 24 kHz mono FLAC is ~1.5 MB
VOICE_IDLE_TTL_S = 90 * 86_400  # a clip unused for a season is dropped (and its user's pointer)
# A synthesis that started before "forget my voice" must not re-cache its answer when it ends:
# above the 240 s single-flight wait, itself above the bots' 180 s TTS read timeout.
VOICE_FORGOTTEN_TTL_S = 300
USAGE_RETENTION_DAYS = 90  # a quarter of history for the admin dashboard
# Kept as long as the audio it keys: a bot that starts with the TTS service down can still
# find every cached answer.
ENGINE_IDENTITY_TTL_S = AUDIO_TTL_S
ENGINE_IDENTITY = f"{PREFIX}engine"

# --- the admin endpoint (constants: no setting tunes them) ------------------------------------
ADMIN_SESSION_TTL_S = 12 * 3600  # a working day; then the login form again
# Failed logins of the admin form are counted in fixed windows; past either limit the form
# answers 429 until its window ends, even for the right token. Five guesses per address (a
# typo or two is fine), fifty from everyone (spreading guesses over many addresses gains
# nothing) per quarter hour: at most ~4,800 guesses a day against a 32+ character token.
ADMIN_LOGIN_WINDOW_S = 15 * 60
ADMIN_LOGIN_FAILURES_PER_CLIENT = 5
ADMIN_LOGIN_FAILURES_OVERALL = 50

_VOICE_ID = re.compile(r"[0-9a-f]{16,128}")
_FIELD = re.compile(r"[^:{}\s]{1,128}")


def as_text(value: bytes | str) -> str:
    """A key, id or token read back from Redis (the client returns bytes)."""
    return value.decode() if isinstance(value, bytes) else value


def audio(digest: str) -> str:
    return f"{PREFIX}audio:{digest}"


def lock(digest: str) -> str:
    return f"{PREFIX}sf:lock:{digest}"


def outcome(digest: str, token: str) -> str:
    return f"{PREFIX}sf:outcome:{digest}:{token}"


def digest_of(audio_key: str) -> str:
    """The hex part of an audio key (single-flight keys are derived from it)."""
    prefix = f"{PREFIX}audio:"
    if not audio_key.startswith(prefix):
        raise ValueError(f"not a saybot audio key: {audio_key!r}")
    return audio_key.removeprefix(prefix)


def check_voice_id(voice_id: str) -> str:
    """Voice ids are hex digests chosen by the caller; anything else could forge a key."""
    if not _VOICE_ID.fullmatch(voice_id):
        raise ValueError(f"a voice id is 16-128 lowercase hex digits, not {voice_id!r}")
    return voice_id


def check_field(name: str, value: str) -> str:
    """Platform names and user ids end up inside keys: no separators, braces or spaces."""
    if not _FIELD.fullmatch(value):
        raise ValueError(f"{name} must be 1-128 characters without ':', braces or spaces")
    return value


def voice_clip(voice_id: str) -> str:
    return f"{PREFIX}voice:{{{voice_id}}}:clip"


def voice_owners(voice_id: str) -> str:
    return f"{PREFIX}voice:{{{voice_id}}}:owners"


def voice_audio(voice_id: str) -> str:
    return f"{PREFIX}voice:{{{voice_id}}}:audio"


def voice_forgotten(voice_id: str) -> str:
    return f"{PREFIX}voice:{{{voice_id}}}:forgotten"


def user_voices(platform: str, user_id: str) -> str:
    return f"{PREFIX}user:{platform}:{user_id}:voices"


def user_attached(platform: str, user_id: str) -> str:
    return f"{PREFIX}user:{platform}:{user_id}:attached"


def user_default(platform: str, user_id: str) -> str:
    return f"{PREFIX}user:{platform}:{user_id}:default"


def usage_day(day: str) -> str:
    return f"{PREFIX}usage:day:{day}"


def usage_users(day: str) -> str:
    return f"{PREFIX}usage:users:{day}"


def rate_bucket(platform: str, user_id: str) -> str:
    return f"{PREFIX}rate:{platform}:{user_id}"


# --- saved voices, oldest first (storage.voices keeps at most MAX_VOICES_PER_USER each) -------
#   saybot:v1:user:<platform>:<user_id>:saved_at  sorted set: voice id → Unix time of its save
#                                                 (idle TTL, with the user's list of voices)
def user_voice_saved_at(platform: str, user_id: str) -> str:
    return f"{PREFIX}user:{platform}:{user_id}:saved_at"


def admin_session(digest: str) -> str:
    """An admin session, under the sha256 of its id: a dump of Redis holds no usable cookie."""
    return f"{PREFIX}admin:session:{digest}"


# The throttle's Lua script reads and counts both keys at once: one {hash tag}, one slot.
def admin_login_failures_all() -> str:
    return f"{PREFIX}admin:{{login}}:failures:all"


def admin_login_failures_client(digest: str) -> str:
    """One client address's failures, under the address's sha256 (no addresses in Redis)."""
    return f"{PREFIX}admin:{{login}}:failures:client:{digest}"


# --- consent to clone a voice (storage.consents) ----------------------------------------------
#   saybot:v1:user:<platform>:<user_id>:consents  hash: voice id → JSON {"at": Unix time,
#                                                 "wording": version} (idle TTL of a voice)
def user_consents(platform: str, user_id: str) -> str:
    return f"{PREFIX}user:{platform}:{user_id}:consents"


# --- a community's settings (storage.chat_settings) -------------------------------------------
# A Discord server or a Telegram group, keyed by the platform's id for it. Durable: the admins
# chose them, so they never expire (a server that removes the bot leaves one small hash).
def chat_settings(platform: str, chat_id: str) -> str:
    return f"{PREFIX}chat:{platform}:{chat_id}:settings"


# --- GPU seconds spent (storage.spend), for the quotas and the monthly budget -----------------
SPEND_DAY_TTL_S = 2 * 86_400  # the day itself, and a day's margin for clocks around midnight
SPEND_MONTH_TTL_S = 400 * 86_400  # this month against the budget, and a year back to compare


def spend_user_day(platform: str, user_id: str, day: str) -> str:
    return f"{PREFIX}spend:user:{platform}:{user_id}:{day}"


def spend_server_day(platform: str, server_id: str, day: str) -> str:
    return f"{PREFIX}spend:server:{platform}:{server_id}:{day}"


def spend_month(month: str) -> str:
    return f"{PREFIX}spend:month:{month}"


# --- files a platform already holds (storage.sent_files) --------------------------------------
# Telegram keeps every file a bot uploads and hands back an id to send it again without the
# bytes. The ids of one cached answer live in one hash beside it, a field per sender (an id
# works only for the bot that got it). The hash tag is the whole audio key, so the hash lands
# in the answer's own cluster slot: a hit reads both in one round trip, on one node.
def sent_files(audio_key: str) -> str:
    return f"{PREFIX}sent:{{{audio_key}}}"
