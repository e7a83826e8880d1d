"""What can go wrong with voice channels, each with the one sentence a Discord user sees.

SayError (bots.errors)
└── VoiceChannelError           a voice command that cannot be done as asked
    ├── NotInVoice              the caller is in no voice channel of this server
    ├── NotInBotsChannel        the bot is in another channel than the caller (or none)
    ├── BusyElsewhere           /join while the bot talks to people in another channel
    ├── NotYourTurn             /skip or /stop of someone else's audio without Manage Channels
    ├── NoManageChannels        /read without Manage Channels
    ├── ReaderOff               /read on a bot started without DISCORD_READ_CHANNELS=true
    ├── VoiceUnavailable        joining failed (no permission to connect, a timeout)
    └── NotPlayable             an answer that is not 48 kHz Opus in 20 ms frames
"""

from __future__ import annotations

from bots.errors import SayError


class VoiceChannelError(SayError):
    code = "voice"


class NotInVoice(VoiceChannelError):
    code = "voice_not_in_channel"


class NotInBotsChannel(VoiceChannelError):
    code = "voice_other_channel"


class BusyElsewhere(VoiceChannelError):
    code = "voice_busy"


class NotYourTurn(VoiceChannelError):
    code = "voice_not_yours"


class NoManageChannels(VoiceChannelError):
    code = "voice_not_a_manager"


class ReaderOff(VoiceChannelError):
    code = "voice_reader_off"


class VoiceUnavailable(VoiceChannelError):
    code = "voice_unavailable"


class NotPlayable(VoiceChannelError):
    code = "voice_not_playable"


VOICE_WORDING: dict[type[SayError], str] = {
    NotInVoice: "Join a voice channel of this server first, then ask again.",
    NotInBotsChannel: "I'm not in your voice channel — use /join from there first.",
    BusyElsewhere: (
        "I'm in use in another voice channel here; someone who can manage channels can move me."
    ),
    NotYourTurn: "Only whoever asked for it, or members who can manage channels, can do that.",
    NoManageChannels: "Only members who can manage channels can start or stop reading.",
    ReaderOff: "Reading channels aloud is turned off on this bot (DISCORD_READ_CHANNELS).",
    VoiceUnavailable: "I couldn't join that voice channel — check that I may connect and speak.",
    NotPlayable: "I couldn't play that audio in the voice channel.",
}
