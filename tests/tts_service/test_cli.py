"""``saybot`` as a user runs it: real processes, real files, real exit codes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
import soundfile as sf

from tests.tts_service.audio_samples import clip


def saybot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env["TTS_ONNX_THREADS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "bots.cli", *args],
        cwd=cwd,
        env=env | {"PYTHONPATH": str(Path(__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize(("name", "fmt"), [("hi.ogg", "OGG"), ("hi.wav", "WAV"), ("hi.mp3", "MP3")])
def test_say_writes_the_format_the_file_name_asks_for(tmp_path: Path, name: str, fmt: str) -> None:
    result = saybot("say", "Hello from the command line.", "-o", name, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert f"wrote {name}" in result.stdout
    info = sf.info(io.BytesIO((tmp_path / name).read_bytes()))
    assert info.format == fmt
    assert info.duration > 0.5


def test_seeded_output_is_identical_across_processes(tmp_path: Path) -> None:
    for name in ("a.ogg", "b.ogg"):
        result = saybot("say", "Same words, same bytes.", "--seed", "5", "-o", name, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert (tmp_path / "a.ogg").read_bytes() == (tmp_path / "b.ogg").read_bytes()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["say", "hi", "-o", "x.ogg", "--exaggeration", "3"],
            "exaggeration must be a number from 0.25 to 2",
        ),
        (["say", "   ", "-o", "x.ogg"], "text is empty"),
        (["say", "hi", "-o", "x.mp3", "--format", "wav"], "does not match the file name x.mp3"),
        (["say", "hi", "-o", "x.ogg", "--voice", "missing.wav"], "cannot read the voice clip"),
        (
            ["say", "hi", "-o", "x.ogg", "--voice", "clip.wav"],
            "voice cloning needs the Chatterbox engine",
        ),
        (["serve-tts", "--host", "0.0.0.0"], "refusing to listen on 0.0.0.0 without TTS_API_TOKEN"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "clip.wav").write_bytes(clip("wav"))
    result = saybot(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "x.ogg").exists()


@pytest.mark.parametrize("command", [[], ["say"], ["serve-tts"], ["run"]])
def test_help_for_each_command(tmp_path: Path, command: list[str]) -> None:
    result = saybot(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "usage: saybot" in result.stdout
