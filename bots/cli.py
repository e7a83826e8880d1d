"""``saybot``: the command line.

    saybot say "text" -o out.ogg [--voice clip.wav] [...]   synthesise in-process, no server
    saybot serve-tts [--host --port]                         the TTS web service (uvicorn)
    saybot run                                               the whole product

Exit codes: 0 done; 1 synthesis or runtime failure (the engine failed to load,
say); 2 bad usage, input or settings (a ``TTS_*`` variable that does not
validate); 130 interrupted (Ctrl-C). Every failure is one line on stderr;
``-v`` adds the traceback of unexpected ones. Heavy imports happen inside each
command so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError
from pydantic_settings import BaseSettings

from tts_service.schema import FILE_EXTENSIONS, PARAM_RANGES, AudioFormat

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C

log = logging.getLogger("saybot")


class CLIError(Exception):
    """A one-line message for the user and the exit code to leave with."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="saybot", description="Chatterbox text-to-speech for Discord and Telegram."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    say = commands.add_parser(
        "say",
        help="speak text into an audio file with the local engine",
        description="Synthesise in-process with the local engine (no server, no Redis).",
    )
    say.add_argument("text", help="what to say (1-1000 characters)")
    say.add_argument("-o", "--output", type=Path, required=True, help="audio file to write")
    say.add_argument("--voice", type=Path, help="reference clip to clone (Chatterbox only)")
    for name in ("exaggeration", "temperature", "cfg_weight"):
        bounds = PARAM_RANGES[name]
        say.add_argument(
            f"--{name.replace('_', '-')}",
            type=float,
            default=bounds.default,
            help=f"{bounds.describe()} (default {bounds.default:g})",
        )
    say.add_argument("--seed", type=int, default=0, help="0 = unseeded; others repeat exactly")
    say.add_argument(
        "--format",
        choices=[f.value for f in AudioFormat],
        help="output format (default: from the file extension, else ogg_opus)",
    )

    serve = commands.add_parser(
        "serve-tts",
        help="run the TTS web service",
        description="Run the TTS service (engine from TTS_ENGINE, default piper) with uvicorn.",
    )
    serve.add_argument("--host", help="interface to bind (default TTS_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default TTS_PORT or 8088)")

    commands.add_parser(
        "run",
        help="run the product: bots, admin endpoint, local TTS and embedded Valkey",
        description="Start every configured part in one process; Ctrl-C stops it cleanly.",
    )
    return parser


def output_format(requested: str | None, output: Path) -> AudioFormat:
    """The format asked for, checked against the file name so MP3 never holds WAV."""
    by_extension = {f".{ext}": fmt for fmt, ext in FILE_EXTENSIONS.items()} | {
        ".opus": AudioFormat.OGG_OPUS
    }
    implied = by_extension.get(output.suffix.lower())
    if requested is None:
        return implied or AudioFormat.OGG_OPUS
    chosen = AudioFormat(requested)
    if implied is not None and implied is not chosen:
        raise CLIError(
            f"--format {chosen.value} does not match the file name {output.name}; "
            f"use a .{FILE_EXTENSIONS[chosen]} name or drop --format"
        )
    return chosen


def command_say(args: argparse.Namespace) -> int:
    from tts_service import synthesis
    from tts_service.engines import build_engine
    from tts_service.errors import InvalidRequest, PayloadTooLarge, TTSError
    from tts_service.schema import TTSParams, describe_validation_error
    from tts_service.settings import TTSSettings

    fmt = output_format(args.format, args.output)
    try:
        params = TTSParams(
            text=args.text,
            exaggeration=args.exaggeration,
            temperature=args.temperature,
            cfg_weight=args.cfg_weight,
            seed=args.seed,
            format=fmt,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CLIError(describe_validation_error(tuple(first["loc"]), first["msg"])) from exc
    try:
        reference = args.voice.read_bytes() if args.voice else None
    except OSError as exc:
        raise CLIError(f"cannot read the voice clip {args.voice}: {exc.strerror}") from exc

    settings = TTSSettings()
    try:
        engine = build_engine(settings)
        engine.load()
    except TTSError as exc:
        raise CLIError(exc.message, EXIT_FAILURE) from exc
    except Exception as exc:  # missing weights, a broken install: the user's to fix, not a bug
        log.debug("engine load failed", exc_info=True)
        raise CLIError(
            f"the {settings.engine} engine failed to load: {one_line(exc)}", EXIT_FAILURE
        ) from exc
    try:
        result = synthesis.synthesize(engine, params, reference)
    except (InvalidRequest, PayloadTooLarge) as exc:
        raise CLIError(exc.message) from exc
    except TTSError as exc:
        raise CLIError(exc.message, EXIT_FAILURE) from exc
    try:
        args.output.write_bytes(result.audio)
    except OSError as exc:
        raise CLIError(f"cannot write {args.output}: {exc.strerror}", EXIT_FAILURE) from exc
    print(
        f"wrote {args.output} ({result.format.value}, {result.duration_s:.1f} s, "
        f"{result.engine.name}, {result.synthesis_s:.2f} s to synthesise)"
    )
    return EXIT_OK


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def settings_error(exc: ValidationError) -> str | None:
    """One line naming the environment variable, if ``exc`` is about a settings class.

    The input value is left out: it may be a token.
    """
    pending: list[type[BaseSettings]] = list(BaseSettings.__subclasses__())
    while pending:
        cls = pending.pop()
        if cls.__name__ == exc.title:
            break
        pending.extend(cls.__subclasses__())
    else:
        return None
    first = exc.errors()[0]
    field = str(first["loc"][0]) if first["loc"] else ""
    variable = f"{cls.model_config.get('env_prefix', '')}{field}".upper()
    return f"invalid setting {variable}: {first['msg']} (check the environment and .env)"


def command_serve_tts(args: argparse.Namespace) -> int:
    import uvicorn

    from bots.log_redaction import redact_secrets_in_logs
    from tts_service.api import UnsafeBind, check_bind_allowed, create_app
    from tts_service.engines import build_engine
    from tts_service.settings import TTSSettings

    settings = TTSSettings()
    redact_secrets_in_logs(settings.api_token)  # uvicorn's own handlers included
    host = args.host or settings.host
    port = args.port or settings.port
    try:
        check_bind_allowed(host, settings)
    except UnsafeBind as exc:
        raise CLIError(str(exc)) from exc
    app = create_app(build_engine(settings), settings)
    # Server.run, not uvicorn.run: after a graceful Ctrl-C shutdown it re-raises the
    # signal, which main() turns into exit 130 (uvicorn.run swallows it and exits 0).
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info")).run()
    return EXIT_OK


def command_run(args: argparse.Namespace) -> int:
    from bots.run import run_product

    return run_product()


COMMANDS = {"say": command_say, "serve-tts": command_serve_tts, "run": command_run}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return COMMANDS[args.command](args)
    except CLIError as exc:
        print(f"saybot: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ValidationError as exc:
        message = settings_error(exc)
        if message is None:
            raise  # a model that is not settings failed: a bug, keep the traceback
        print(f"saybot: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("saybot: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
