"""Keep secrets out of logs, whoever logs them.

Libraries log request URLs (httpx logs every Telegram call, and the Bot API puts
the bot token in the URL path). A filter on the root handlers replaces every
configured secret with ``***`` in each record's final message.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pydantic import SecretStr

from tts_service.exposure import secret_value

MASK = "***"


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        # Longest first, so a secret containing another is masked whole.
        self.secrets = sorted({s for s in secrets if len(s) >= 6}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = message
        for secret in self.secrets:
            redacted = redacted.replace(secret, MASK)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            for secret in self.secrets:
                record.exc_text = record.exc_text.replace(secret, MASK)
        return True


def redact_secrets_in_logs(*secrets: SecretStr | str | None) -> None:
    """Install the filter on every root handler (call after ``logging.basicConfig``)."""
    # Only set secrets: a blank one is no secret, and masking whitespace would mangle every line.
    values = [
        value
        for s in secrets
        if (value := secret_value(SecretStr(s) if isinstance(s, str) else s)) is not None
    ]
    redactor = RedactSecrets(values)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redactor)
    # httpx logs one INFO line per request, URL included: noise at best.
    logging.getLogger("httpx").setLevel(logging.WARNING)
