"""``saybot run``: everything configured, in one process.

Until the chat adapters land this serves the local TTS service (Piper) on
loopback, which is the part of the product that needs no account.
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def run_product() -> int:
    import uvicorn

    from tts_service.api import create_app
    from tts_service.engines import build_engine
    from tts_service.settings import TTSSettings

    settings = TTSSettings()
    log.info("no chat adapters yet: serving the local TTS service only")
    uvicorn.run(create_app(build_engine(settings), settings), host="127.0.0.1", port=settings.port)
    return 0
