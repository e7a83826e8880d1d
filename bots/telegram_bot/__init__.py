"""The Telegram adapter (python-telegram-bot v22).

PTB 22 is moving durations (``Voice.duration``, ``RetryAfter.retry_after``) from
ints to ``timedelta`` and warns on every read until a program opts in; saybot
opts in, and reads both shapes.
"""

import os

os.environ.setdefault("PTB_TIMEDELTA", "true")
