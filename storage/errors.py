"""The storage error tree. Reads degrade instead of raising; these reach callers only where
silently doing nothing would mislead a user (saving or forgetting a voice) or a wait is bounded.

StorageError                      base; ``code`` is stable for metrics and user text
├── StorageUnavailable            Redis unreachable for a write the user asked for, or the
│                                 embedded server could not start
├── VoiceTooLarge                 a reference clip over ``voice_max_bytes``
├── SingleFlightTimeout           waited ``singleflight_wait_timeout_s`` for another synthesis
└── SingleFlightFailed            the synthesis another caller (maybe in another process) ran
                                  failed; carries that error's ``code`` and ``message``
"""

from __future__ import annotations


class StorageError(Exception):
    """Base of every error the storage package raises on purpose."""

    code = "storage_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class StorageUnavailable(StorageError):
    code = "storage_unavailable"


class VoiceTooLarge(StorageError):
    code = "voice_too_large"

    def __init__(self, size_bytes: int, max_bytes: int) -> None:
        super().__init__(f"the voice clip is {size_bytes} bytes; the limit is {max_bytes}")
        self.size_bytes = size_bytes
        self.max_bytes = max_bytes


class SingleFlightTimeout(StorageError):
    code = "singleflight_timeout"


class SingleFlightFailed(StorageError):
    """Another caller's synthesis of the same key failed; this is its error, rebuilt.

    ``code`` is the failed error's own ``code`` attribute (or ``"error"``), so a waiter
    can be told the same sentence as the caller whose synthesis failed.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
