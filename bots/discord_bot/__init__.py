"""The Discord adapter (discord.py 2.x, application commands only).

- ``client``: the ``discord.Client`` (or ``AutoShardedClient``) that carries the flow,
  command sync, start/stop and the connected check ``saybot run`` reports.
- ``commands``: ``/say``, ``/voice set|forget|default`` and ``/help``; thin handlers.
- ``replies``: how answers and errors reach the user (the one place errors become text).
- ``attachments``: voice clips refused by their metadata before anything is downloaded.
- ``voice_message``: audio sent as a Discord voice message (flag, waveform, duration).
"""
