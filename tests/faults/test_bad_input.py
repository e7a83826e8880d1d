"""A corpus of bad input against the real ``saybot run``: each message gets exactly one
reply, a clear one (a voice note, or a sentence that is not "Something went wrong"), and
the bot keeps serving.

The whole corpus is sent at once to one process, from one user per case, and read back
once the process has exited (so no late second reply can hide). The TTS service is the
real one over Piper behind a cloning engine's face, so every clip is downloaded, decoded
and checked by the bot (and again by the service) instead of being refused for want of
cloning.

The decode bombs (a few hundred KB that decode to gigabytes, with a lying declared
duration) have their own test: today they are decoded in full before their length is
checked, which issue #13's metadata checks will refuse up front.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from bots.messages import GAVE_UP, UNEXPECTED
from tests.faults import bad_clips
from tests.faults.faulty_tts import serving
from tests.faults.product import (
    BUSY_PREFIX,
    TOOK_TOO_LONG,
    UNAVAILABLE,
    Product,
    is_voice_note,
    redis_url,
    replies,
    reply_problems,
    running_product,
    say,
    sentence,
    until_answered,
)
from tests.redis_fixtures import start_valkey
from tests.standins.telegram_api import Call, TelegramStandin
from tests.tts_service.audio_samples import clip as sample_clip
from tests.tts_service.engine_wrappers import PiperWrapper
from tts_service.engines.base import FloatAudio, ReferenceClip
from tts_service.engines.piper import PiperEngine
from tts_service.schema import EngineInfo, TTSParams

pytestmark = [pytest.mark.faults, pytest.mark.timeout(180)]

JSON = dict[str, Any]
CAPTION = "/say Hello from the voice you sent."
# Sentences about the bot's own state, never the right answer to an input.
NOT_ABOUT_THE_INPUT = (UNAVAILABLE, TOOK_TOO_LONG, BUSY_PREFIX, GAVE_UP)
MiB = 1024 * 1024


class Expect(Enum):
    SPOKEN = "a voice note"
    REFUSED = "a sentence saying what is wrong"
    EITHER = "a voice note, or a sentence about the input"  # the engine's call
    # A clip that passes every check: spoken, or first one question (the sender's consent
    # to cloning their voice), never a refusal.
    ACCEPTED = "a voice note, or one question before it"


@dataclass(frozen=True)
class Case:
    id: str
    send: Callable[[TelegramStandin, int], JSON]
    expect: Expect
    says: str = ""  # a fragment a refusal must contain


def text(case_id: str, args: str, expect: Expect, says: str = "") -> Case:
    return Case(case_id, lambda tg, user: tg.send_command(user, user, "say", args), expect, says)


def voice(
    case_id: str,
    data: Callable[[], bytes],
    expect: Expect,
    says: str = "",
    *,
    duration: int = 5,
    caption: str = CAPTION,
    **declared: Any,
) -> Case:
    """A voice note with ``caption``; ``duration`` (and ``file_size``…) as the sender declares."""

    def send(tg: TelegramStandin, user: int) -> JSON:
        return tg.send_voice(user, user, data(), duration=duration, caption=caption, **declared)

    return Case(case_id, send, expect, says)


def audio_file(
    case_id: str,
    data: Callable[[], bytes],
    file_name: str,
    mime_type: str,
    expect: Expect,
    says: str = "",
    *,
    duration: int = 5,
) -> Case:
    def send(tg: TelegramStandin, user: int) -> JSON:
        return tg.send_audio(
            user,
            user,
            data(),
            duration=duration,
            file_name=file_name,
            mime_type=mime_type,
            caption=CAPTION,
        )

    return Case(case_id, send, expect, says)


def replying_to_a_voice_note(case_id: str, data: Callable[[], bytes], expect: Expect) -> Case:
    """``/say`` sent as a reply to a voice note sent earlier (its own reply is the help)."""

    def send(tg: TelegramStandin, user: int) -> JSON:
        note = tg.send_voice(user, user, data(), duration=4)
        return tg.send_command(user, user, "say", "Say this in that voice.", reply_to=note)

    return Case(case_id, send, expect)


def words(length: int) -> str:
    """Real words, exactly ``length`` characters, no trailing space."""
    sentence_ = "The quick brown fox jumps over the lazy dog. "
    body = (sentence_ * (length // len(sentence_) + 1))[:length]
    return body[:-1] + "." if body.endswith(" ") else body


TEXTS = [
    text("text-empty", "", Expect.REFUSED, "tell me what to say"),
    text("text-spaces", "      ", Expect.REFUSED),
    text("text-tabs-and-newlines", "\t\n \n\t", Expect.REFUSED),
    text("text-1001-chars", "a" * 1001, Expect.REFUSED, "1001 characters"),
    text("text-1001-words", words(1001), Expect.REFUSED, "1001 characters"),
    # At the limit, and cheap to speak: zero-width spaces count as characters, not as sound.
    text("text-1000-chars", "Hello there." + "\u200b" * 988, Expect.SPOKEN),
    text("text-padded-to-1200", "Hello there." + " " * 1200 + "Bye.", Expect.SPOKEN),
    text("text-nul-only", "\x00\x00\x00", Expect.REFUSED),
    text("text-c0-controls-only", "\x01\x02\x03\x1b\x7f", Expect.REFUSED),
    text("text-c1-controls-only", "\x80\x81\x9f", Expect.REFUSED),
    text("text-controls-inside", "Hello\x00 there\x07, friend\x1b.", Expect.SPOKEN),
    text("text-ansi-escapes", "\x1b[31mRed alert\x1b[0m", Expect.SPOKEN),
    text("text-rtl-hebrew", "שלום עולם", Expect.EITHER),
    text("text-rtl-arabic", "مرحبا بالعالم", Expect.EITHER),
    text("text-rtl-override", "\u202eHello there\u202c", Expect.EITHER),
    text("text-emoji-only", "😀🎉🔥", Expect.EITHER),
    text("text-emoji-zwj-family", "👨\u200d👩\u200d👧\u200d👦" * 3, Expect.EITHER),
    text("text-zero-width-only", "\u200b\u200c\u200d\u2060\ufeff", Expect.EITHER),
    text("text-zero-width-inside", "Hel\u200blo the\u200cre", Expect.SPOKEN),
    text("text-only-dots", "...", Expect.REFUSED, "nothing to say"),
    text("text-only-punctuation", "?!,.;:-", Expect.EITHER),
    text("text-only-dashes-and-ellipses", "—–…", Expect.EITHER),
    text("text-1001-astral-chars", "𝕳" * 1001, Expect.REFUSED, "1001 characters"),
    text("text-1001-emoji", "😀" * 1001, Expect.REFUSED, "1001 characters"),
    text("text-zalgo", "H" + "\u0336" * 300 + "i", Expect.EITHER),
    text("text-combining-accents", "Cafe\u0301 au lait, s'il vous plai\u0302t.", Expect.SPOKEN),
    text("text-cjk", "你好，世界", Expect.EITHER),
    text("text-many-scripts", "Ωμέγα Привет 🙂 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ﷽", Expect.EITHER),
    text("text-html", "<b>bold</b> & <script>alert(1)</script>", Expect.SPOKEN),
    text("text-markdown", "*bold* _it_ `code` [link](http://example.com)", Expect.SPOKEN),
]

OPTIONS = [
    text("option-unknown-number", "speed=2 Hello there", Expect.REFUSED, "unknown option"),
    text("option-misspelt", "temprature=0.5 Hello there", Expect.REFUSED, "did you mean"),
    text("option-not-an-option", "mood=happy Hello there", Expect.SPOKEN),
    text("option-exaggeration-high", "exaggeration=3 Hello", Expect.REFUSED, "0.25 to 2"),
    text("option-exaggeration-low", "exaggeration=0.1 Hello", Expect.REFUSED, "0.25 to 2"),
    text("option-temperature-zero", "temperature=0 Hello", Expect.REFUSED, "0.05 to 5"),
    text("option-temperature-high", "temperature=5.5 Hello", Expect.REFUSED, "0.05 to 5"),
    text("option-cfg-high", "cfg_weight=1.5 Hello", Expect.REFUSED, "0 to 1"),
    text("option-cfg-negative", "cfg_weight=-0.1 Hello", Expect.REFUSED, "0 to 1"),
    text("option-seed-negative", "seed=-1 Hello", Expect.REFUSED, "seed"),
    text("option-seed-fraction", "seed=1.5 Hello", Expect.REFUSED, "seed"),
    text("option-seed-word", "seed=abc Hello", Expect.REFUSED, "seed"),
    text("option-seed-huge", "seed=123456789012345678901234567890 Hello", Expect.EITHER),
    text("option-nan", "exaggeration=nan Hello", Expect.REFUSED, "exaggeration"),
    text("option-nan-capitals", "temperature=NaN Hello", Expect.REFUSED, "temperature"),
    text("option-inf", "temperature=inf Hello", Expect.REFUSED, "temperature"),
    text("option-minus-infinity", "cfg_weight=-infinity Hello", Expect.REFUSED, "cfg_weight"),
    text("option-overflow", "exaggeration=1e400 Hello", Expect.REFUSED, "exaggeration"),
    text("option-word-value", "exaggeration=loud Hello", Expect.REFUSED, "exaggeration"),
    text("option-empty-value", "exaggeration= Hello", Expect.REFUSED, "exaggeration"),
    text("option-hex-value", "exaggeration=0x1 Hello", Expect.REFUSED, "exaggeration"),
    text("option-underscored-digits", "exaggeration=1_0 Hello", Expect.REFUSED, "exaggeration"),
    text("option-arabic-indic-digit", "exaggeration=\u0661 Hello there", Expect.EITHER),
    text("option-only-options", "seed=5", Expect.REFUSED, "tell me what to say"),
    text("option-repeated", "seed=1 seed=2 Hello there", Expect.SPOKEN),
    text("option-capital-key", "SEED=3 Hello there", Expect.SPOKEN),
    text(
        "option-every-edge",
        "exaggeration=2 temperature=0.05 cfg_weight=0 seed=0 Hello",
        Expect.SPOKEN,
    ),
    text("option-fullwidth-equals", "seed\uff1d5 Hello there", Expect.EITHER),
]

CLIPS = [
    voice("clip-good-wav", bad_clips.speech_like, Expect.ACCEPTED),
    voice("clip-good-opus", bad_clips.real_opus, Expect.ACCEPTED),
    audio_file("clip-good-m4a", lambda: sample_clip("m4a"), "a.m4a", "audio/mp4", Expect.ACCEPTED),
    voice("clip-corrupt-bytes", bad_clips.corrupt_bytes, Expect.REFUSED, "could not be decoded"),
    voice("clip-zero-length", lambda: b"", Expect.REFUSED, "empty"),
    audio_file(
        "clip-text-file-named-ogg", bad_clips.text_file, "voice.ogg", "audio/ogg", Expect.REFUSED
    ),
    audio_file(
        "clip-text-file-declared-text",
        bad_clips.text_file,
        "notes.txt",
        "text/plain",
        Expect.REFUSED,
        "not an audio file",
    ),
    voice("clip-png-as-voice", bad_clips.png_image, Expect.REFUSED),
    voice("clip-ogg-magic-then-garbage", bad_clips.ogg_magic_then_garbage, Expect.REFUSED),
    voice("clip-ogg-headers-only", bad_clips.ogg_head_only, Expect.REFUSED),
    voice("clip-truncated-ogg", bad_clips.truncated_ogg, Expect.EITHER),
    voice("clip-half-a-second", lambda: bad_clips.speech_like(0.5), Expect.REFUSED, "0.5 s"),
    voice("clip-silent", bad_clips.silent_wav, Expect.REFUSED, "silent"),
    voice("clip-nan-samples", lambda: bad_clips.float_wav(math.nan), Expect.REFUSED),
    voice("clip-inf-samples", lambda: bad_clips.float_wav(math.inf), Expect.REFUSED),
    voice("clip-huge-samples", lambda: bad_clips.float_wav(1e30), Expect.EITHER),
    voice(
        "clip-90-s-declared",
        lambda: bad_clips.speech_like(90),
        Expect.REFUSED,
        "90 s long",
        duration=90,
    ),
    voice("clip-90-s-declared-5", lambda: bad_clips.speech_like(90), Expect.REFUSED, "90.0 s"),
    voice(
        "clip-declared-11-mb",
        bad_clips.speech_like,
        Expect.REFUSED,
        "11.0 MB",
        file_size=11_000_000,
    ),
    voice("clip-wav-at-1-hz", lambda: bad_clips.wav_at_rate(1, 600), Expect.REFUSED),
    voice("clip-wav-at-8-hz", lambda: bad_clips.wav_at_rate(8, 10), Expect.EITHER),
    voice("clip-wav-at-384-khz", lambda: bad_clips.wav_at_rate(384_000, 10), Expect.EITHER),
    voice("clip-wav-claiming-gigabytes", bad_clips.wav_claiming_gigabytes, Expect.EITHER),
    voice("clip-opus-claiming-hours", bad_clips.opus_claiming_hours, Expect.REFUSED),
    voice(
        "clip-flac-header-garbage", lambda: bad_clips.header_then_garbage("flac"), Expect.REFUSED
    ),
    voice("clip-mp3-header-garbage", lambda: bad_clips.header_then_garbage("mp3"), Expect.REFUSED),
    voice("clip-wav-header-garbage", lambda: bad_clips.header_then_garbage("wav"), Expect.REFUSED),
    audio_file(
        "clip-30-min-flac-declared",
        bad_clips.flac_8ch_silence,
        "silence.flac",
        "audio/flac",
        Expect.REFUSED,
        "1800 s long",
        duration=1800,
    ),
    voice(
        "clip-caption-bad-option",
        bad_clips.speech_like,
        Expect.REFUSED,
        caption="/say seed=-1 Hello",
    ),
    replying_to_a_voice_note("clip-replied-corrupt", bad_clips.corrupt_bytes, Expect.REFUSED),
    replying_to_a_voice_note("clip-replied-good", bad_clips.real_opus, Expect.ACCEPTED),
]

CORPUS = TEXTS + OPTIONS + CLIPS
FIRST_USER = 10_000

# (id, clip, file name, MIME type): each declared as a 5-second clip, which it is not.
BOMBS: list[tuple[str, Callable[[], bytes], str, str]] = [
    ("bomb-flac-8-channels-30-min", bad_clips.flac_8ch_silence, "voice.flac", "audio/flac"),
    ("bomb-opus-2-hours-of-dtx", bad_clips.opus_hours_of_dtx, "voice.ogg", "audio/ogg"),
]
# What decoding a clip may cost the bot process at most (peak RSS above where it was).
# A minute of 48 kHz stereo float32 is 23 MB; the decoders need some room around it.
BOMB_MEMORY_BOUND_KIB = 256 * 1024


class PiperThatClaimsCloning(PiperWrapper):
    """Piper behind a cloning engine's face: the bots send every clip on, the service
    decodes it, and Piper speaks in its own voice."""

    @property
    def info(self) -> EngineInfo:
        return self.inner.info.model_copy(update={"name": "piper-cloning", "can_clone_voice": True})

    def synthesize(
        self, text: str, params: TTSParams, reference: ReferenceClip | None
    ) -> FloatAudio:
        return self.inner.synthesize(text, params, None)


@dataclass
class CorpusRun:
    answers: dict[str, list[Call]]
    """The replies to each case's message, read after the process exited."""
    served_after: Call
    exit_status: int
    log: str
    reply_problems: list[str]
    """Messages (the corpus's and any other, such as a voice note replied to) without
    exactly one reply."""


@pytest.fixture(scope="module")
def cloning_tts(piper_engine: PiperEngine) -> Iterator[str]:
    with serving(PiperThatClaimsCloning(piper_engine)) as (url, _):
        yield url


@pytest.fixture(scope="module")
def corpus_valkey(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_valkey(data_dir=tmp_path_factory.mktemp("corpus-valkey"))
    try:
        yield server
    finally:
        server.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def corpus(
    cloning_tts: str, corpus_valkey: Any, tmp_path_factory: pytest.TempPathFactory
) -> CorpusRun:
    """The whole corpus, sent at once to one ``saybot run``, then a normal ``/say``; read
    back once the process has exited. Each case's test judges its own replies."""
    async with TelegramStandin() as tg:
        product = await Product.start(
            tg,
            tmp_path_factory.mktemp("corpus"),
            tts_url=cloning_tts,
            redis_url=redis_url(corpus_valkey),
        )
        try:
            sent = {case.id: case.send(tg, FIRST_USER + n) for n, case in enumerate(CORPUS)}
            await until_answered(product, tg, sent.values(), timeout_s=150)
            served_after = await say(product, tg, FIRST_USER - 1, "Still here after the corpus.")
        finally:
            status = await product.terminate()
        answers = {key: replies(tg, message) for key, message in sent.items()}
        return CorpusRun(answers, served_after, status, product.log, reply_problems(tg))


def test_the_corpus_has_at_least_60_cases() -> None:
    assert len(CORPUS) >= 60
    assert len({case.id for case in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[case.id for case in CORPUS])
def test_a_bad_input_gets_exactly_one_clear_reply(case: Case, corpus: CorpusRun) -> None:
    answers = corpus.answers[case.id]
    assert len(answers) == 1, f"{len(answers)} replies: {answers}"
    check_reply(answers[0], case.expect, case.says)


def test_the_bot_keeps_serving_after_the_corpus(corpus: CorpusRun) -> None:
    assert is_voice_note(corpus.served_after)
    assert corpus.exit_status == 0, corpus.log[-3000:]
    assert not corpus.reply_problems, corpus.reply_problems
    assert "Traceback" not in corpus.log, corpus.log
    assert "unexpected error" not in corpus.log


def check_reply(reply: Call, expect: Expect, says: str = "") -> None:
    if reply.method == "sendVoice" or expect is Expect.SPOKEN:
        assert expect is not Expect.REFUSED, "a bad input was spoken"
        assert is_voice_note(reply), f"not a voice note: {reply} {reply.params.get('text')!r}"
        return
    answer = sentence(reply)
    assert answer != UNEXPECTED, "a bad input was answered as a failure of the bot"
    assert not answer.startswith(NOT_ABOUT_THE_INPUT), f"an answer about the bot: {answer!r}"
    refused = answer.startswith("I can't")
    if expect is Expect.REFUSED:
        assert refused, f"not a refusal of the input: {answer!r}"
        assert says in answer, f"{answer!r} does not say {says!r}"
    elif expect is Expect.ACCEPTED:
        assert not refused, f"a good clip was refused: {answer!r}"


@pytest.mark.timeout(150)
async def test_decode_bombs_are_refused_without_decoding_them(
    tg: TelegramStandin, valkey: Any, tmp_path: Path, cloning_tts: str
) -> None:
    """Each bomb is refused with a sentence, one at a time, and the bot's peak memory while
    it is handled stays within ``BOMB_MEMORY_BOUND_KIB`` of where it was. Today each is
    decoded in full first (see the printed table)."""
    measured: list[str] = []
    problems: list[str] = []
    async with running_product(
        tg, tmp_path / "bot", tts_url=cloning_tts, redis_url=redis_url(valkey)
    ) as product:
        for n, (bomb_id, make, file_name, mime_type) in enumerate(BOMBS):
            data = make()
            message, seconds, grew_kib = await _send_bomb(
                product, tg, 20_000 + n, data, file_name, mime_type
            )
            answers = replies(tg, message)
            text_ = answers[0].params.get("text") if answers else None
            measured.append(
                f"{bomb_id}: {len(data) / 1024:.0f} KiB, answered in {seconds:.1f} s, "
                f"peak RSS +{grew_kib / 1024:.0f} MiB: {text_!r}"
            )
            if len(answers) != 1:
                problems.append(f"{bomb_id}: {len(answers)} replies")
            else:
                try:
                    check_reply(answers[0], Expect.REFUSED)
                except AssertionError as exc:
                    problems.append(f"{bomb_id}: {exc}")
            if grew_kib > BOMB_MEMORY_BOUND_KIB:
                problems.append(f"{bomb_id}: decoding it took {grew_kib / 1024:.0f} MiB")
        await say(product, tg, 20_999, "Still here after the bombs.")
    print("\n".join(["decode bombs, one at a time:", *measured]))
    assert not problems, "\n".join(problems + measured)


async def _send_bomb(
    product: Product,
    tg: TelegramStandin,
    user: int,
    data: bytes,
    file_name: str,
    mime_type: str,
) -> tuple[JSON, float, int]:
    """Send one bomb as a 5-second clip; how long its answer took and how much the bot's
    peak memory grew meanwhile."""
    product.reset_peak_rss()
    baseline_kib = product.rss_kib()
    started = time.monotonic()
    message = tg.send_audio(
        user, user, data, duration=5, file_name=file_name, mime_type=mime_type, caption=CAPTION
    )
    await until_answered(product, tg, [message], timeout_s=90)
    return message, time.monotonic() - started, product.peak_rss_kib() - baseline_kib
