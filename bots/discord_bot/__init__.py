"""The Discord adapter (discord.py 2.x, application commands only).

- ``client``: the ``discord.Client`` (or ``AutoShardedClient``) that carries the flow,
  command sync, start/stop and the connected check ``saybot run`` reports.
- ``commands``: ``/say``, ``/voice set|show|forget|default``, ``/forget`` and ``/help``;
  thin handlers. ``community``: ``/settings`` for those who manage the server.
- ``replies``: how answers and errors reach the user (the one place errors become text).
- ``attachments``: a voice clip attached to a command, as a ``ClipSource``.
- ``consent_view``: the consent question's two buttons.
- ``state``: what commands and replies need of the running bot (a ``Protocol``).
- ``voice_message``: audio sent as a Discord voice message (flag, waveform, duration).
"""
