"""Keep secrets out of logs, whoever logs them and whichever handler writes them.

Libraries log request URLs (httpx logs every Telegram call, and the Bot API puts the bot
token in the URL path; uvicorn's access log writes the path of every request). A filter on
the root logger's handlers misses the handlers uvicorn installs on its own loggers
(``propagate=False``) and any handler added later, so redaction happens where every record
is born: ``redact_secrets_in_logs`` installs a log record factory that masks every
configured secret (and its percent-encoded form, as uvicorn quotes paths) in the message,
its arguments, the traceback and the stack, before any handler sees the record.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote

from pydantic import SecretStr

from tts_service.exposure import secret_value

MASK = "***"

# Arguments formatted as they are: nothing in them to mask.
_PLAIN = (int, float, bool, type(None))


class RedactSecrets(logging.Filter):
    """Masks every secret in a record. As a filter it covers one handler or logger; the
    record factory ``redact_secrets_in_logs`` installs covers them all."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self.secrets: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these too: every set secret, whatever its length (a blank one is no secret),
        and its URL-quoted forms."""
        forms = {
            form
            for secret in secrets
            if secret.strip()
            for form in (secret, quote(secret, safe=""), quote(secret))
        }
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted(forms.union(self.secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        self.redact(record)
        return True

    def mask(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text

    def redact(self, record: logging.LogRecord) -> logging.LogRecord:
        """Mask ``record`` in place: its message and each argument (so formatters that
        unpack the arguments, as uvicorn's access log does, still find them), then the
        traceback and stack, formatted now so no handler formats them again unmasked."""
        if not self.secrets:
            return record
        if isinstance(record.msg, str):
            record.msg = self.mask(record.msg)
        if isinstance(record.args, Mapping):
            record.args = {key: self._arg(value) for key, value in record.args.items()}
        elif isinstance(record.args, tuple):
            record.args = tuple(self._arg(value) for value in record.args)
        try:
            message = record.getMessage()
        except Exception:  # a message that cannot be formatted: logging reports it later
            message = None
        if message is not None and self.mask(message) != message:
            # A secret split across the message and its arguments: keep the masked text.
            record.msg, record.args = self.mask(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        return record

    def _arg(self, value: Any) -> Any:
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, str):
            return self.mask(value)
        try:
            shown = str(value)
            masked = self.mask(shown)
            if masked == shown and self.mask(repr(value)) == repr(value):
                return value  # nothing secret in it: formatted as before (%r, %d included)
        except Exception:
            return value
        return masked  # e.g. an httpx.URL: its text, masked


_factory_before: Callable[..., logging.LogRecord] | None = None
_redactor: RedactSecrets | None = None


def redact_secrets_in_logs(*secrets: SecretStr | str | None) -> RedactSecrets:
    """Mask these secrets in every log record this process creates, whichever logger and
    handler (uvicorn's own included, and those added later). Calling it again replaces the
    secrets; ``stop_redacting`` undoes it."""
    global _factory_before, _redactor
    # Only set secrets: a blank one is no secret, and masking whitespace would mangle every line.
    values = [
        value
        for s in secrets
        if (value := secret_value(SecretStr(s) if isinstance(s, str) else s)) is not None
    ]
    redactor = _redactor = RedactSecrets(values)
    if _factory_before is None:
        _factory_before = logging.getLogRecordFactory()
    make_record = _factory_before

    def redacted_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redactor.redact(make_record(*args, **kwargs))

    logging.setLogRecordFactory(redacted_record)
    # httpx logs one INFO line per request, URL included: noise at best.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    return redactor


def redact_also(*secrets: str) -> None:
    """Mask secrets made at run time too (a generated webhook secret), if redaction is on."""
    if _redactor is not None:
        _redactor.add(secrets)


def stop_redacting() -> None:
    """Put back the record factory ``redact_secrets_in_logs`` replaced (for tests)."""
    global _factory_before, _redactor
    if _factory_before is not None:
        logging.setLogRecordFactory(_factory_before)
    _factory_before = _redactor = None
