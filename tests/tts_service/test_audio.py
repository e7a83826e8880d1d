"""Encoding and reference-clip decoding with real codecs."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.tts_service.audio_samples import clip, disclosure_tag, encode_sf, tone, with_silence
from tts_service import audio
from tts_service.engines.piper import PiperEngine
from tts_service.errors import PayloadTooLarge, ReferenceAudioError
from tts_service.schema import AudioFormat, EngineInfo, TTSParams

FORMATS = ["wav", "flac", "ogg_vorbis", "ogg_opus", "mp3", "m4a", "webm"]
ENGINE = EngineInfo(
    name="chatterbox",
    model_version="chatterbox-tts-0.1.7+0123456789ab",
    sample_rate=24_000,
    can_clone_voice=True,
    honoured_params=["seed"],
    max_chunk_chars=250,
    watermarked=True,
)
SAID = "AI-generated speech (saybot; engine chatterbox chatterbox-tts-0.1.7+0123456789ab)"


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_phone_format_decodes_to_mono_at_the_engine_rate(fmt: str) -> None:
    reference = audio.prepare_reference(clip(fmt, seconds=3.0), sample_rate=24_000)
    assert reference.sample_rate == 24_000
    assert reference.samples.dtype == np.float32
    assert reference.samples.ndim == 1
    # Lossy codecs pad a little; trimming keeps the speech-like part only.
    assert reference.samples.size / 24_000 == pytest.approx(3.0, abs=0.1)
    assert len(reference.sha256) == 64


def test_resamples_from_the_rate_the_decoder_reports() -> None:
    # The same 2 s tone at 8 kHz and at 44.1 kHz must come out as 2 s at 22.05 kHz.
    for rate in (8_000, 44_100):
        data = encode_sf(tone(2.0, rate), rate, "WAV", "PCM_16")
        reference = audio.prepare_reference(data, sample_rate=22_050)
        assert reference.samples.size == pytest.approx(2.0 * 22_050, rel=0.02)


def test_stereo_is_mixed_down() -> None:
    mono = tone(2.0, 16_000)
    buffer = io.BytesIO()
    sf.write(buffer, np.stack([mono, mono], axis=1), 16_000, format="WAV")
    reference = audio.prepare_reference(buffer.getvalue(), sample_rate=16_000)
    assert reference.samples.ndim == 1


def test_silence_around_speech_is_trimmed() -> None:
    padded = with_silence(tone(2.0, 16_000), 16_000, lead_s=1.5, tail_s=2.0)
    data = encode_sf(padded, 16_000, "WAV", "PCM_16")
    reference = audio.prepare_reference(data, sample_rate=16_000)
    assert reference.samples.size / 16_000 == pytest.approx(2.0, abs=0.05)


def test_the_same_voice_in_two_lossless_containers_has_one_fingerprint() -> None:
    # One 16-bit recording, stored as WAV and as FLAC. (Written from int16: libsndfile's
    # float → 16-bit conversion rounds differently per container, which would make two
    # recordings, not one.)
    samples = np.round(tone(2.0, 16_000) * 32_767).astype(np.int16)
    wav_data = encode_sf(samples, 16_000, "WAV", "PCM_16")
    flac_data = encode_sf(samples, 16_000, "FLAC", "PCM_16")
    assert sf.info(io.BytesIO(flac_data)).format == "FLAC"
    assert flac_data != wav_data
    wav = audio.prepare_reference(wav_data, 16_000)
    flac = audio.prepare_reference(flac_data, 16_000)
    other = audio.prepare_reference(
        encode_sf(tone(2.0, 16_000, 330.0), 16_000, "FLAC", "PCM_16"), 16_000
    )
    assert wav.sha256 == flac.sha256
    assert wav.sha256 != other.sha256


def syllables(seconds: float, rate: int, peak_dbfs: float) -> np.ndarray:
    """Speech-like: a voiced tone in 4 Hz syllable bursts, scaled to the given peak."""
    t = np.arange(round(seconds * rate)) / rate
    envelope = 0.15 + 0.85 * np.abs(np.sin(np.pi * 4 * t))
    samples = tone(seconds, rate) * envelope
    return (samples * 10 ** (peak_dbfs / 20) / np.max(np.abs(samples))).astype(np.float32)


def test_a_quiet_recording_is_a_voice_not_silence() -> None:
    # -40 dBFS peaks: a phone held far away. Most frames are under -45 dBFS, so an
    # absolute threshold cuts the voice short (or calls it silence); it must be kept
    # whole, its padding trimmed, and levelled.
    quiet = syllables(2.0, 16_000, peak_dbfs=-40.0)
    hiss = np.random.default_rng(1).normal(0, 10 ** (-75 / 20), 16_000).astype(np.float32)
    padded = np.concatenate([hiss, quiet, hiss])
    reference = audio.prepare_reference(encode_sf(padded, 16_000, "WAV", "PCM_16"), 16_000)
    assert reference.samples.size / 16_000 == pytest.approx(2.0, abs=0.05)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(reference.samples**2)))
    assert rms_dbfs == pytest.approx(audio.TARGET_RMS_DBFS, abs=1.0)


def test_noise_before_loud_speech_is_still_trimmed() -> None:
    loud = syllables(2.0, 16_000, peak_dbfs=-3.0)
    hiss = np.random.default_rng(2).normal(0, 10 ** (-50 / 20), 24_000).astype(np.float32)
    padded = np.concatenate([hiss, loud, hiss])
    reference = audio.prepare_reference(encode_sf(padded, 16_000, "WAV", "PCM_16"), 16_000)
    assert reference.samples.size / 16_000 == pytest.approx(2.0, abs=0.05)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is not audio at all" * 100, "could not be decoded"),
        (encode_sf(tone(0.5), 16_000, "WAV", "PCM_16"), "needs between 1 and 60 seconds"),
        (encode_sf(tone(61.0), 16_000, "WAV", "PCM_16"), "needs between 1 and 60 seconds"),
        (encode_sf(tone(200.0, 8_000), 8_000, "WAV", "PCM_U8"), "needs between 1 and 60 seconds"),
        (encode_sf(np.zeros(48_000, np.float32), 16_000, "WAV", "PCM_16"), "silent"),
        (
            encode_sf(
                np.random.default_rng(3).normal(0, 10 ** (-70 / 20), 48_000).astype(np.float32),
                16_000,
                "WAV",
                "PCM_16",
            ),
            "silent",
        ),
    ],
    ids=["empty", "garbage", "too-short", "too-long", "far-too-long", "silence", "faint-hiss"],
)
def test_unusable_clips_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ReferenceAudioError, match=message):
        audio.prepare_reference(data, sample_rate=16_000)


def test_clips_over_10_mb_are_refused_before_decoding() -> None:
    with pytest.raises(PayloadTooLarge, match="limit is 10 MB"):
        audio.prepare_reference(b"\0" * (10 * 1024 * 1024 + 1), sample_rate=16_000)


@pytest.mark.parametrize(
    ("fmt", "container", "rate"),
    [
        (AudioFormat.OGG_OPUS, ("OGG", "OPUS"), 48_000),
        (AudioFormat.WAV, ("WAV", "PCM_16"), 22_050),
        (AudioFormat.MP3, ("MP3", "MPEG_LAYER_III"), 44_100),
    ],
)
def test_encode_gives_exactly_the_format_asked(
    fmt: AudioFormat, container: tuple[str, str], rate: int
) -> None:
    data = audio.encode(tone(1.5, 22_050), 22_050, fmt)
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate) == (*container, rate)
    assert info.duration == pytest.approx(1.5, abs=0.08)


def test_opus_bitrate_suits_speech() -> None:
    data = audio.encode(tone(10.0, 22_050), 22_050, AudioFormat.OGG_OPUS)
    kbps = len(data) * 8 / 10.0 / 1000
    assert 10 < kbps < 64


def test_ogg_output_is_byte_stable_and_valid() -> None:
    samples = tone(2.0, 22_050)
    first = audio.encode(samples, 22_050, AudioFormat.OGG_OPUS)
    second = audio.encode(samples, 22_050, AudioFormat.OGG_OPUS)
    assert first == second
    # libogg drops pages whose CRC is wrong, so a full decode proves the rewritten CRCs.
    decoded, rate = sf.read(io.BytesIO(first))
    assert len(decoded) / rate == pytest.approx(2.0, abs=0.05)


def test_loudness_is_normalised_and_peaks_limited() -> None:
    quiet = tone(2.0, 16_000) * 0.01
    loud = audio.normalize_loudness(quiet)
    rms_dbfs = 20 * np.log10(np.sqrt(np.mean(loud**2)))
    assert rms_dbfs == pytest.approx(audio.TARGET_RMS_DBFS, abs=0.5)
    spiky = np.zeros(16_000, np.float32)
    spiky[100] = 0.9
    assert np.max(np.abs(audio.normalize_loudness(spiky))) <= audio.PEAK_CEILING + 1e-6


def ogg_pages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """(header flags, granule position, serial, body) of every Ogg page, in order."""
    pages = []
    offset = 0
    while offset < len(data):
        assert data[offset : offset + 4] == b"OggS", f"no Ogg page at byte {offset}"
        flags = data[offset + 5]
        granule = int.from_bytes(data[offset + 6 : offset + 14], "little", signed=True)
        serial = int.from_bytes(data[offset + 14 : offset + 18], "little")
        segments = data[offset + 26]
        body_start = offset + 27 + segments
        body_end = body_start + sum(data[offset + 27 : body_start])
        pages.append((flags, granule, serial, data[body_start:body_end]))
        offset = body_end
    return pages


@pytest.mark.parametrize("seconds", [0.5, 1.5, 2.3456, 7.01])
def test_opus_decodes_to_exactly_the_input_length(seconds: float) -> None:
    # Pre-skip and end trimming: the last granule position must cut the padding of the
    # final 20 ms frame, or every reply is up to 26.5 ms longer than what was spoken.
    samples = syllables(seconds, 22_050, peak_dbfs=-3.0)
    expected = audio.resample(samples, 22_050, audio.OPUS_SAMPLE_RATE).size
    data = audio.encode(samples, 22_050, AudioFormat.OGG_OPUS)
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.samplerate, info.channels) == ("OGG", "OPUS", 48_000, 1)
    assert info.duration == pytest.approx(samples.size / 22_050, abs=0.02)
    decoded, rate = sf.read(io.BytesIO(data), dtype="float32")
    assert rate == 48_000
    assert decoded.size == expected


def test_opus_is_one_mono_stream_voice_messages_accept() -> None:
    # Telegram voice notes and Discord voice messages want exactly this: one Ogg
    # logical stream (BOS … EOS) of mono Opus with an OpusHead and OpusTags.
    samples = syllables(3.0, 22_050, peak_dbfs=-3.0)
    pages = ogg_pages(audio.encode(samples, 22_050, AudioFormat.OGG_OPUS))
    head, tags = pages[0][3], pages[1][3]
    assert head[:8] == b"OpusHead"
    channels, pre_skip = head[9], int.from_bytes(head[10:12], "little")
    input_rate = int.from_bytes(head[12:16], "little")
    assert (channels, input_rate) == (1, 48_000)
    assert tags[:8] == b"OpusTags"
    assert pages[0][0] & 0x02 and pages[-1][0] & 0x04  # beginning and end of stream
    assert {serial for _, _, serial, _ in pages} == {audio.OGG_SERIAL}
    # The last granule counts the pre-skip plus every real sample, nothing more.
    expected = audio.resample(samples, 22_050, audio.OPUS_SAMPLE_RATE).size
    assert pages[-1][1] == pre_skip + expected


def test_decoded_opus_is_the_input_not_just_the_right_length() -> None:
    samples = syllables(3.0, 22_050, peak_dbfs=-3.0)
    reference = audio.resample(samples, 22_050, audio.OPUS_SAMPLE_RATE)
    data = audio.encode(samples, 22_050, AudioFormat.OGG_OPUS)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    # Aligned sample for sample: a wrong pre-skip would shift it by hundreds of samples.
    assert np.corrcoef(reference, decoded)[0, 1] > 0.95


ENCODED_IN_A_FRESH_PROCESS = """
import hashlib, sys
import numpy as np
from tts_service import audio
from tts_service.schema import AudioFormat, EngineInfo
samples = np.load(sys.argv[1])
engine = EngineInfo.model_validate_json(sys.argv[2])
for fmt in AudioFormat:
    print(hashlib.sha256(audio.encode(samples, 22_050, fmt, engine=engine)).hexdigest())
"""


def test_encoded_bytes_are_identical_across_processes(tmp_path: Path) -> None:
    # A seeded request promises byte-identical audio, and the cache keys on it: nothing
    # per-process (a random Ogg serial, a clock in a tag) may reach the bytes.
    samples = syllables(2.0, 22_050, peak_dbfs=-3.0)
    path = str(tmp_path / "samples.npy")
    np.save(path, samples)
    here = [
        hashlib.sha256(audio.encode(samples, 22_050, fmt, engine=ENGINE)).hexdigest()
        for fmt in AudioFormat
    ]
    elsewhere = [
        subprocess.run(
            [sys.executable, "-c", ENCODED_IN_A_FRESH_PROCESS, path, ENGINE.model_dump_json()],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for _ in range(2)
    ]
    assert elsewhere == [here, here]
    other = syllables(2.0, 22_050, peak_dbfs=-6.0)
    ogg = audio.encode(other, 22_050, AudioFormat.OGG_OPUS, engine=ENGINE)
    assert hashlib.sha256(ogg).hexdigest() != here[0]


# --- the AI-generated tag ----------------------------------------------------------------------


def opus_comments(data: bytes) -> tuple[str, list[str]]:
    """(vendor, user comments) of the OpusTags header (RFC 7845 §5.2), parsed by hand."""
    tags = ogg_pages(data)[1][3]
    assert tags[:8] == b"OpusTags"
    vendor_end = 12 + int.from_bytes(tags[8:12], "little")
    count = int.from_bytes(tags[vendor_end : vendor_end + 4], "little")
    comments, offset = [], vendor_end + 4
    for _ in range(count):
        size = int.from_bytes(tags[offset : offset + 4], "little")
        comments.append(tags[offset + 4 : offset + 4 + size].decode())
        offset += 4 + size
    assert offset == len(tags)  # nothing after the last comment
    return tags[12:vendor_end].decode(), comments


def test_ogg_opus_says_it_is_ai_generated_and_is_still_a_voice_note() -> None:
    samples = syllables(2.0, 22_050, peak_dbfs=-3.0)
    data = audio.encode(samples, 22_050, AudioFormat.OGG_OPUS, engine=ENGINE)
    assert opus_comments(data) == ("ffmpeg", [f"DESCRIPTION={SAID}"])
    assert disclosure_tag(data) == SAID
    assert ogg_pages(data)[0][3][:8] == b"OpusHead"
    info = sf.info(io.BytesIO(data))
    assert (info.format, info.subtype, info.channels) == ("OGG", "OPUS", 1)
    decoded, _ = sf.read(io.BytesIO(data), dtype="float32")
    assert decoded.size == audio.resample(samples, 22_050, audio.OPUS_SAMPLE_RATE).size


def test_mp3_says_it_is_ai_generated_in_an_id3v2_txxx_frame() -> None:
    data = audio.encode(tone(1.5, 22_050), 22_050, AudioFormat.MP3, engine=ENGINE)
    assert data[:4] == b"ID3\x04"  # ID3v2.4, first in the file where every reader looks
    frame = b"TXXX" + bytes([0, 0, 0, len(SAID) + 15, 0, 0, 3]) + b"AI generated\x00"
    assert frame + SAID.encode() in data[: 10 + 200]
    assert disclosure_tag(data) == SAID


def test_wav_says_it_is_ai_generated_in_a_list_info_chunk_before_the_data() -> None:
    data = audio.encode(tone(1.5, 22_050), 22_050, AudioFormat.WAV, engine=ENGINE)
    chunk = b"ICMT" + (len(SAID) + 1).to_bytes(4, "little") + SAID.encode() + b"\x00"
    assert data.index(b"LIST") < data.index(chunk) < data.index(b"data")
    assert sf.SoundFile(io.BytesIO(data)).copy_metadata() == {"comment": SAID}
    assert disclosure_tag(data) == SAID


@pytest.mark.parametrize("fmt", list(AudioFormat))
def test_without_an_engine_the_tag_still_says_ai(fmt: AudioFormat) -> None:
    data = audio.encode(tone(1.5, 22_050), 22_050, fmt)
    assert disclosure_tag(data) == "AI-generated speech (saybot)"


def test_opus_bitrate_suits_piper_speech(piper_engine: PiperEngine) -> None:
    text = (
        "The morning train was late again, so Maria walked the last two miles along the "
        "river. She counted herons, waved at a fisherman, and arrived just as the old "
        "bakery on the corner opened its doors."
    )
    rate = piper_engine.info.sample_rate
    speech = audio.normalize_loudness(
        piper_engine.synthesize(text, TTSParams(text=text, seed=1), None)
    )
    seconds = speech.size / rate
    assert seconds > 8.0
    data = audio.encode(speech, rate, AudioFormat.OGG_OPUS)
    kbps = len(data) * 8 / seconds / 1000
    assert 16 < kbps < 64
    assert sf.info(io.BytesIO(data)).duration == pytest.approx(seconds, abs=0.02)
