"""``saybot`` as a user runs it: real processes, real files, real exit codes."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import soundfile as sf

from tests.redis_fixtures import free_port
from tests.tts_service.audio_samples import clip


def cli_env(**overrides: str) -> dict[str, str]:
    """The user's environment minus any TTS_* of the developer's, plus ``overrides``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TTS_")}
    env["TTS_ONNX_THREADS"] = "1"
    return env | {"PYTHONPATH": str(Path(__file__).parents[2])} | overrides


def saybot(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bots.cli", *args],
        cwd=cwd,
        env=cli_env(**env),
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
        (["say", "...", "-o", "x.ogg"], "the text has nothing to say aloud"),
        (["say", "hi", "-o", "x.ogg", "--seed", "2.0"], "invalid int value"),
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


@pytest.mark.parametrize("command", [["say", "hi", "-o", "x.ogg"], ["serve-tts"]])
def test_a_bad_setting_exits_2_naming_the_variable(tmp_path: Path, command: list[str]) -> None:
    result = saybot(*command, cwd=tmp_path, TTS_MAX_IN_FLIGHT="many-secret-ish")
    assert result.returncode == 2
    assert result.stderr.startswith("saybot: error: invalid setting TTS_MAX_IN_FLIGHT:")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "many-secret-ish" not in result.stderr  # values are never echoed: could be a token
    assert not (tmp_path / "x.ogg").exists()


def test_an_engine_that_cannot_load_exits_1_with_one_line(tmp_path: Path) -> None:
    empty = tmp_path / "checkpoint"
    empty.mkdir()
    result = saybot(
        "say",
        "hi",
        "-o",
        "x.ogg",
        cwd=tmp_path,
        TTS_ENGINE="chatterbox",
        TTS_CHATTERBOX_CHECKPOINT_DIR=str(empty),
    )
    assert result.returncode == 1
    assert result.stderr.startswith(
        "saybot: error: the chatterbox engine failed to load: FileNotFoundError:"
    )
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.ogg").exists()


def test_ctrl_c_stops_the_service_with_exit_130(tmp_path: Path) -> None:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "bots.cli", "serve-tts", "--port", str(port)],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()
            assert time.monotonic() < deadline, "serve-tts never answered"
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        server.send_signal(signal.SIGINT)
        _, stderr = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert stderr.rstrip().endswith("saybot: interrupted")


@pytest.mark.parametrize("command", [[], ["say"], ["serve-tts"], ["run"]])
def test_help_for_each_command(tmp_path: Path, command: list[str]) -> None:
    result = saybot(*command, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert "usage: saybot" in result.stdout
