"""Discord voice channels: ``/join``, ``/leave``, one playback queue per server (``/skip``,
``/stop``), ``/say`` heard in the caller's channel, and the opt-in channel reader (``/read``).

Modules: ``opus_source`` (an answer's Opus packets as a discord.py ``AudioSource``, no
re-encoding), ``playback`` (a server's queue), ``rooms`` (which servers the bot is in, idle
leave), ``commands`` (the slash commands), ``cleaning`` and ``reader`` (the channel reader),
``errors`` (what a user is told).
"""
