"""The Discord stand-in against the real discord.py client: gateway, sync, interactions, CDN."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import warnings
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

with warnings.catch_warnings():
    # discord.py imports audioop, deprecated since Python 3.11 (PEP 594); see discord_api
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    import discord
    import discord.gateway
    import discord.http
    from discord import app_commands

    from tests.standins.discord_api import (
        FLAG_EPHEMERAL,
        FLAG_IS_VOICE_MESSAGE,
        FLAG_LOADING,
        AttachmentSpec,
        DiscordStandin,
        discord_pointed_at,
        running_client,
    )

AUDIO = b"OggS\x00\x02" + bytes(range(256)) * 4  # stands for an OGG/Opus reply
USER_ID = 80351110224678912


class ConsentView(discord.ui.View):
    """Two buttons, as the consent prompt has: Yes updates the message at once (type 7), No
    defers the update (type 6) and edits the original; both then follow up."""

    def __init__(self, outcomes: asyncio.Queue[tuple[str, Any]]) -> None:
        super().__init__(timeout=None)
        self.outcomes = outcomes

    @discord.ui.button(label="Yes", custom_id="consent:yes", style=discord.ButtonStyle.success)
    async def yes(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.edit_message(content="Thanks", view=None)
        sent = await interaction.followup.send("Recorded", ephemeral=True, wait=True)
        await self.outcomes.put(("consent:yes", (interaction, sent)))

    @discord.ui.button(label="No", custom_id="consent:no")
    async def no(self, interaction: discord.Interaction, button: discord.ui.Button[Any]) -> None:
        self.stop()
        await interaction.response.defer()
        edited = await interaction.edit_original_response(content="Declined", view=None)
        sent = await interaction.followup.send("Nothing kept", ephemeral=True, wait=True)
        await self.outcomes.put(("consent:no", (edited, sent)))


class EchoBot(discord.Client):
    """A minimal bot shaped like saybot's adapter: defer, then follow up with audio."""

    def __init__(self, guild_id: int) -> None:
        # Default intents exclude the privileged ones (message content, members, presences)
        super().__init__(intents=discord.Intents.default(), guild_ready_timeout=0)
        self.guild = discord.Object(id=guild_id)
        self.tree = app_commands.CommandTree(self)
        # One (command, result) per finished invocation; results are what the bot got back
        self.outcomes: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        tree = self.tree

        @tree.command(description="Say text back as audio")
        @app_commands.describe(text="What to say")
        async def echo(interaction: discord.Interaction, text: str) -> None:
            await interaction.response.defer(thinking=True)
            audio = discord.File(io.BytesIO(AUDIO), "say.ogg")
            sent = await interaction.followup.send(content=f"echo: {text}", file=audio, wait=True)
            original = await interaction.original_response()
            await self.outcomes.put(("echo", (interaction, sent, original)))

        @tree.command(description="Answer only the caller")
        async def whisper(
            interaction: discord.Interaction, text: str, public_defer: bool = False
        ) -> None:
            await interaction.response.defer(thinking=True, ephemeral=not public_defer)
            sent = await interaction.followup.send(content=text, ephemeral=True, wait=True)
            await self.outcomes.put(("whisper", sent))

        @tree.command(description="Read an attached clip")
        async def clip(
            interaction: discord.Interaction, voice: discord.Attachment, read: bool = True
        ) -> None:
            await interaction.response.defer(thinking=True)
            data = await voice.read() if read else b""
            await interaction.followup.send(content=f"{len(data)} bytes")
            await self.outcomes.put(("clip", (voice, data)))

        @tree.command(description="Edit the deferred response twice")
        async def retitle(interaction: discord.Interaction) -> None:
            await interaction.response.defer(thinking=True)
            audio = discord.File(io.BytesIO(AUDIO), "say.ogg")
            first = await interaction.edit_original_response(content="first", attachments=[audio])
            second = await interaction.edit_original_response(
                content="second", attachments=first.attachments
            )
            await self.outcomes.put(("retitle", (first, second)))

        @tree.command(description="Answer at once with a file")
        async def quick(interaction: discord.Interaction, text: str) -> None:
            audio = discord.File(io.BytesIO(AUDIO), "say.ogg")
            callback = await interaction.response.send_message(content=text, file=audio)
            await self.outcomes.put(("quick", callback))

        @tree.command(description="Take a while before answering")
        async def slow(interaction: discord.Interaction, delay: float) -> None:
            await asyncio.sleep(delay)
            await interaction.response.defer(thinking=True)

        @tree.command(description="Ask for consent with two buttons")
        async def consent(interaction: discord.Interaction) -> None:
            view = ConsentView(self.outcomes)
            await interaction.response.send_message("Keep your voice?", view=view, ephemeral=True)
            await self.outcomes.put(("consent", view))

        @tree.command(description="Answer nothing; the test drives REST itself")
        async def hold(interaction: discord.Interaction) -> None:
            await self.outcomes.put(("hold", interaction))

        @tree.error
        async def on_error(
            interaction: discord.Interaction, error: app_commands.AppCommandError
        ) -> None:
            name = interaction.command.name if interaction.command else "?"
            await self.outcomes.put((name, getattr(error, "original", error)))

    async def setup_hook(self) -> None:
        self.tree.copy_global_to(guild=self.guild)
        await self.tree.sync(guild=self.guild)

    async def outcome(self, name: str, timeout_s: float = 5.0) -> Any:
        """The next finished invocation, which must be of ``name``."""
        got, result = await asyncio.wait_for(self.outcomes.get(), timeout_s)
        assert got == name, (got, result)
        return result


@pytest.fixture
async def standin() -> AsyncIterator[DiscordStandin]:
    base, gateway = discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY
    async with DiscordStandin() as s, discord_pointed_at(s):
        assert s.api_base == discord.http.Route.BASE
        yield s
    assert (
        base,
        gateway,
    ) == (discord.http.Route.BASE, discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY)
    current = asyncio.current_task()
    assert [t for t in asyncio.all_tasks() if t is not current and not t.done()] == []


@pytest.fixture
async def bot(standin: DiscordStandin) -> AsyncIterator[EchoBot]:
    client = EchoBot(standin.guild_id)
    async with running_client(client, standin.token, ready_timeout=5):
        yield client
    assert client.is_closed()
    for thread in threading.enumerate():
        if isinstance(thread, discord.gateway.KeepAliveHandler):
            thread.join(timeout=2)  # stopped by close(); it exits on its next wake-up
            assert not thread.is_alive()


def _only(items: list[Any]) -> Any:
    assert len(items) == 1, items
    return items[0]


async def test_connect_identifies_heartbeats_and_reads_ready(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    identify = _only(standin.identifies)
    assert identify["token"] == standin.token
    assert identify["intents"] == discord.Intents.default().value
    connection = standin.gateway_connections[0]
    assert (connection["v"], connection["encoding"]) == ("10", "json")
    assert connection["compress"] == "zlib-stream"  # asked for; plain JSON frames still work
    assert standin.heartbeats >= 1  # discord.py beats once as soon as HELLO arrives
    assert bot.user is not None and bot.user.id == standin.application_id
    assert bot.application_id == standin.application_id
    guild = bot.get_guild(standin.guild_id)  # from GUILD_CREATE, sent for the GUILDS intent
    assert guild is not None and guild.get_channel(standin.channel_id) is not None
    assert [c.path for c in standin.calls()][:2] == ["/users/@me", "/oauth2/applications/@me"]


async def test_setup_hook_syncs_the_commands_to_the_guild(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    assert None not in standin.synced_commands  # nothing synced globally
    body = {c["name"]: c for c in standin.synced_commands[standin.guild_id]}
    assert set(body) == {"echo", "whisper", "clip", "retitle", "quick", "slow", "consent", "hold"}
    assert body["echo"]["options"] == [
        {"type": 3, "name": "text", "description": "What to say", "required": True}
    ]
    clip_options = {o["name"]: o for o in body["clip"]["options"]}
    assert clip_options["voice"]["type"] == 11 and clip_options["voice"]["required"]
    assert standin.command_id("echo", standin.guild_id) is not None
    assert standin.command_id("echo") is None


async def test_deferred_followup_carries_the_audio_file(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    payload = await standin.send_slash_command(
        "echo", [{"name": "text", "value": "hello"}], user_id=USER_ID
    )
    interaction, sent, original = await bot.outcome("echo")

    assert interaction.user.id == USER_ID and interaction.guild_id == standin.guild_id
    callback = _only(standin.calls("/callback"))
    followup = _only(standin.calls(f"/webhooks/{standin.application_id}/", method="POST"))
    assert callback.json == {"type": 5}
    assert callback.query["with_response"] == "1"
    assert callback.seq < followup.seq
    assert followup.json["content"] == "echo: hello"
    upload = _only(followup.files)
    assert (upload.name, upload.filename, upload.data) == ("files[0]", "say.ogg", AUDIO)
    # The first followup after a deferral resolves the "thinking…" message
    message = _only(standin.interaction_messages(payload))
    assert sent.id == original.id == int(message["id"])
    assert not message["flags"] & FLAG_LOADING
    attachment = _only(sent.attachments)
    assert (attachment.filename, attachment.size) == ("say.ogg", len(AUDIO))
    assert attachment.content_type == "audio/ogg"
    assert await attachment.read() == AUDIO  # uploads are served by the CDN stand-in too


async def test_edits_of_the_original_response_keep_or_replace_attachments(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    payload = await standin.send_slash_command("retitle", user_id=1)
    first, second = await bot.outcome("retitle")

    assert first.id == second.id and second.content == "second"
    assert [a.id for a in second.attachments] == [a.id for a in first.attachments]
    assert first.attachments[0].filename == "say.ogg"
    edits = standin.calls("/messages/@original", method="PATCH")
    assert [len(c.files) for c in edits] == [1, 0]
    stored = _only(standin.interaction_messages(payload))
    assert stored["edited_timestamp"] is not None and not stored["flags"] & FLAG_LOADING


async def test_wait_for_matches_recorded_calls_and_times_out_readably(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    await standin.send_slash_command("echo", [{"name": "text", "value": "w"}], user_id=1)
    call = await standin.wait_for(r"^/webhooks/\d+/[^/]+$", method="POST", timeout=5)
    assert call.status == 200 and call.files[0].filename == "say.ogg"
    await bot.outcome("echo")
    with pytest.raises(TimeoutError, match="/users/@me"):
        await standin.wait_for("/channels/", timeout=0.05)


async def test_ephemeral_defer_makes_an_ephemeral_followup(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    await standin.send_slash_command("whisper", [{"name": "text", "value": "psst"}], user_id=1)
    sent = await bot.outcome("whisper")

    assert _only(standin.calls("/callback")).json == {"type": 5, "data": {"flags": FLAG_EPHEMERAL}}
    assert _only(standin.calls("/webhooks/", method="POST")).json["flags"] & FLAG_EPHEMERAL
    assert sent.flags.ephemeral


async def test_first_followup_after_a_public_defer_stays_public(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    options = [{"name": "text", "value": "psst"}, {"name": "public_defer", "value": True}]
    await standin.send_slash_command("whisper", options, user_id=1)
    sent = await bot.outcome("whisper")

    assert _only(standin.calls("/webhooks/", method="POST")).json["flags"] & FLAG_EPHEMERAL
    assert not sent.flags.ephemeral  # Discord keeps the deferral's visibility


async def test_attachment_option_resolves_and_downloads_from_the_cdn(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    clip = AttachmentSpec("me.ogg", "audio/ogg", b"OggS-reference-clip")
    payload = await standin.send_slash_command("clip", user_id=USER_ID, attachments={"voice": clip})
    voice, data = await bot.outcome("clip")

    assert isinstance(voice, discord.Attachment)
    assert (voice.filename, voice.content_type, voice.size) == ("me.ogg", "audio/ogg", 19)
    assert data == clip.data
    attachment_id = payload["data"]["options"][0]["value"]
    assert standin.cdn_download_count(attachment_id) == 1


async def test_an_unread_oversized_attachment_is_never_downloaded(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    huge = AttachmentSpec("big.wav", "audio/wav", b"RIFF", size=30 * 1024 * 1024)
    payload = await standin.send_slash_command(
        "clip", [{"name": "read", "value": False}], user_id=1, attachments={"voice": huge}
    )
    voice, _ = await bot.outcome("clip")

    assert voice.size == 30 * 1024 * 1024
    assert standin.cdn_download_count(payload["data"]["options"][1]["value"]) == 0
    assert sum(standin.cdn_downloads.values()) == 0


async def test_immediate_response_with_a_file_is_multipart(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    await standin.send_slash_command("quick", [{"name": "text", "value": "now"}], user_id=1)
    callback_response = await bot.outcome("quick")

    call = _only(standin.calls("/callback"))
    assert call.json["type"] == 4 and call.json["data"]["content"] == "now"
    assert _only(call.files).data == AUDIO
    message = callback_response.resource
    assert isinstance(message, discord.InteractionMessage)
    assert _only(message.attachments).filename == "say.ogg"


async def test_dm_interactions_carry_a_user_and_no_guild(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    await standin.send_slash_command(
        "echo", [{"name": "text", "value": "dm"}], user_id=USER_ID, guild_id=None
    )
    interaction, sent, _ = await bot.outcome("echo")

    assert interaction.guild is None and isinstance(interaction.user, discord.User)
    assert sent.content == "echo: dm"


async def test_a_late_first_response_is_an_unknown_interaction(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    standin.interaction_response_window_s = 0.2
    await standin.send_slash_command("slow", [{"name": "delay", "value": 0.4}], user_id=1)
    error = await bot.outcome("slow")

    assert isinstance(error, discord.NotFound) and error.code == 10062


async def test_a_second_acknowledgement_is_rejected(standin: DiscordStandin, bot: EchoBot) -> None:
    payload = standin.slash_command("whisper", [{"name": "text", "value": "x"}], user_id=1)
    await standin.dispatch_interaction(payload)
    await standin.dispatch_interaction(payload)  # e.g. two bot processes on one token
    results = [await bot.outcome("whisper") for _ in range(2)]

    errors = [r for r in results if isinstance(r, discord.HTTPException)]
    assert [e.code for e in errors] == [40060]


async def test_a_rate_limited_followup_is_retried(standin: DiscordStandin, bot: EchoBot) -> None:
    standin.fail_next("/webhooks/", 429, method="POST")
    await standin.send_slash_command("echo", [{"name": "text", "value": "again"}], user_id=1)
    _, sent, _ = await bot.outcome("echo")

    statuses = [c.status for c in standin.calls("/webhooks/", method="POST")]
    assert statuses == [429, 200]
    assert sent.content == "echo: again"


async def test_reconnect_resumes_the_session_and_keeps_dispatching(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    await standin.reconnect_gateway()

    resume = _only(standin.resumes)
    assert resume["token"] == standin.token and resume["seq"] >= 1
    assert standin.gateway_connections[-1]["path"] == "/gateway/resume"
    assert len(standin.identifies) == 1
    await standin.send_slash_command("echo", [{"name": "text", "value": "still"}], user_id=1)
    _, sent, _ = await bot.outcome("echo")
    assert sent.content == "echo: still"


async def test_sync_rejects_a_required_option_after_an_optional_one(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    options = [
        {"type": 3, "name": "style", "description": "d", "required": False},
        {"type": 3, "name": "text", "description": "d", "required": True},
    ]
    command = {"name": "say", "description": "Say it", "type": 1, "options": options}
    with pytest.raises(discord.HTTPException) as caught:
        await bot.http.bulk_upsert_guild_commands(
            standin.application_id, standin.guild_id, payload=[command]
        )
    assert (caught.value.status, caught.value.code) == (400, 50035)


async def test_a_wrong_token_fails_login(standin: DiscordStandin) -> None:
    client = discord.Client(intents=discord.Intents.none())
    try:
        with pytest.raises(discord.LoginFailure):
            await client.login("not-the-token")
    finally:
        await client.close()


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    payload: dict[str, Any],
    files: list[tuple[str, bytes]] = (),  # type: ignore[assignment]
    *,
    method: str = "POST",
) -> tuple[int, Any]:
    form = aiohttp.FormData()
    form.add_field("payload_json", json.dumps(payload), content_type="application/json")
    for index, (filename, data) in enumerate(files):
        form.add_field(f"files[{index}]", data, filename=filename)
    async with session.request(method, url, data=form) as response:
        assert response.headers["Content-Type"] == "application/json"
        return response.status, await response.json()


async def test_voice_message_rules_and_upload_limit(standin: DiscordStandin, bot: EchoBot) -> None:
    payload = standin.slash_command("hold", user_id=1)
    payload["attachment_size_limit"] = 4096
    await standin.dispatch_interaction(payload)
    await bot.outcome("hold")
    webhook = f"{standin.api_base}/webhooks/{standin.application_id}/{payload['token']}"
    voice = {"flags": FLAG_IS_VOICE_MESSAGE}
    meta = {"id": 0, "filename": "say.ogg", "waveform": "AAAA", "duration_secs": 1.5}
    ogg = [("say.ogg", AUDIO)]

    async with aiohttp.ClientSession() as http:
        status, body = await _post(http, webhook, {"content": "early"})
        assert (status, body["code"]) == (404, 10015)  # no followup before a response
        callback = f"{standin.api_base}/interactions/{payload['id']}/{payload['token']}/callback"
        async with http.post(callback, json={"type": 5}) as response:
            assert response.status == 204  # without ?with_response there is no body
        status, body = await _post(http, webhook, {}, [("big.ogg", b"x" * 5000)])
        assert (status, body["code"]) == (413, 40005)
        status, body = await _post(http, webhook, voice | {"content": "hi"}, ogg)
        assert (status, body["code"]) == (400, 50159)
        status, body = await _post(http, webhook, voice | {"attachments": [meta]}, ogg * 2)
        assert (status, body["code"]) == (400, 50160)
        status, body = await _post(http, webhook, voice, ogg)
        assert (status, body["code"]) == (400, 50161)
        status, body = await _post(http, webhook, voice | {"attachments": [meta]}, ogg)
        assert status == 200 and body["flags"] & FLAG_IS_VOICE_MESSAGE
        assert _only(body["attachments"])["waveform"] == "AAAA"
        original = f"{webhook}/messages/@original"
        status, body = await _post(http, original, {"content": "edit"}, method="PATCH")
        assert (status, body["code"]) == (400, 50162)
        async with http.get(f"{standin.url}/attachments/1/2/none.ogg") as response:
            assert response.status == 404


def _custom_ids(message: dict[str, Any]) -> list[str]:
    return [c["custom_id"] for row in message["components"] for c in row["components"]]


async def test_a_view_button_press_updates_the_ephemeral_message_and_follows_up(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    payload = await standin.send_slash_command("consent", user_id=USER_ID)
    await bot.outcome("consent")
    prompt = _only(standin.interaction_messages(payload))
    assert prompt["flags"] & FLAG_EPHEMERAL
    assert _custom_ids(prompt) == ["consent:yes", "consent:no"]

    press = await standin.press_component(prompt, "consent:yes", user_id=USER_ID)
    interaction, sent = await bot.outcome("consent:yes")

    assert (press["type"], press["data"]) == (3, {"custom_id": "consent:yes", "component_type": 2})
    assert press["message"]["flags"] & FLAG_EPHEMERAL and press["member"]["user"]["id"] == str(
        USER_ID
    )
    assert interaction.message is not None and interaction.message.id == int(prompt["id"])
    assert interaction.user.id == USER_ID and interaction.guild_id == standin.guild_id
    callback, followup = standin.interaction_calls(press)
    assert (callback.json["type"], callback.status) == (7, 200)
    assert callback.json["data"]["components"] == []
    assert (followup.method, followup.status) == ("POST", 200)
    assert standin.interaction_response_type(press) == 7
    updated, recorded = standin.interaction_messages(press)
    assert updated is standin.messages[int(prompt["id"])]
    assert (updated["content"], updated["components"]) == ("Thanks", [])
    assert updated["flags"] & FLAG_EPHEMERAL and updated["edited_timestamp"] is not None
    assert updated["interaction_metadata"]["id"] == payload["id"], "still the command's message"
    assert recorded["content"] == "Recorded" and recorded["flags"] & FLAG_EPHEMERAL
    assert recorded["interaction_metadata"]["interacted_message_id"] == prompt["id"]
    assert sent.flags.ephemeral and sent.content == "Recorded"
    with pytest.raises(ValueError, match="no component 'consent:no'"):
        standin.component_interaction(prompt, "consent:no", user_id=USER_ID)  # buttons gone


async def test_a_deferred_button_update_edits_the_pressed_message(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    payload = await standin.send_slash_command("consent", user_id=USER_ID, guild_id=None)
    await bot.outcome("consent")
    prompt = _only(standin.interaction_messages(payload))

    press = await standin.press_component(prompt, "consent:no", user_id=USER_ID)
    edited, sent = await bot.outcome("consent:no")

    assert "guild_id" not in press and press["user"]["id"] == str(USER_ID), "the prompt was a DM"
    assert [c.json and c.json.get("type") for c in standin.interaction_calls(press)] == [
        6,
        None,
        None,
    ]
    edit = await standin.wait_for_interaction_call(press, "/messages/@original", method="PATCH")
    assert edit.json["components"] == []
    assert edited.id == int(prompt["id"]) and edited.content == "Declined"
    assert standin.messages[int(prompt["id"])]["components"] == []
    assert sent.flags.ephemeral and sent.id != edited.id


async def test_component_interactions_at_the_protocol_level(
    standin: DiscordStandin, bot: EchoBot
) -> None:
    payload = await standin.send_slash_command("hold", user_id=1)
    await bot.outcome("hold")
    buttons = [
        {"type": 2, "style": 1, "label": "Go", "custom_id": "go"},
        {"type": 2, "style": 2, "label": "Off", "custom_id": "off", "disabled": True},
    ]
    row = {"type": 1, "components": buttons}

    def callback_url(p: dict[str, Any]) -> str:
        return f"{standin.api_base}/interactions/{p['id']}/{p['token']}/callback"

    async with aiohttp.ClientSession() as http:
        async with http.post(callback_url(payload), json={"type": 7, "data": {}}) as response:
            assert response.status == 400, "only component interactions update a message"
        reply = {"type": 4, "data": {"content": "pick", "components": [row]}}
        async with http.post(callback_url(payload), json=reply) as response:
            assert response.status == 204
        prompt = _only(standin.interaction_messages(payload))
        assert prompt["components"] == [row] and not prompt["flags"] & FLAG_EPHEMERAL
        with pytest.raises(ValueError, match="disabled"):
            standin.component_interaction(prompt, "off", user_id=2)
        with pytest.raises(ValueError, match="no component"):
            standin.component_interaction(prompt, "gone", user_id=2)
        stale = standin.component_interaction(prompt, "gone", user_id=2, check=False)
        assert stale["data"]["custom_id"] == "gone"

        # Nobody's view listens: the test answers with a new (ephemeral) message instead
        press = await standin.press_component(prompt, "go", user_id=2)
        assert press["member"]["user"]["id"] == "2" and "guild_id" in press
        answer = {"type": 4, "data": {"content": "just you", "flags": FLAG_EPHEMERAL}}
        async with http.post(callback_url(press) + "?with_response=true", json=answer) as response:
            body = await response.json()
        assert body["resource"]["message"]["flags"] & FLAG_EPHEMERAL
        assert body["interaction"]["type"] == 3
        async with http.post(callback_url(press), json={"type": 7, "data": {}}) as response:
            assert (response.status, (await response.json())["code"]) == (400, 40060)
        new = _only(standin.interaction_messages(press))
        assert new["id"] != prompt["id"] and new["interaction_metadata"]["type"] == 3
        assert standin.messages[int(prompt["id"])]["content"] == "pick", "untouched"

        # UPDATE_MESSAGE with_response answers the updated message; followups use the token
        again = await standin.press_component(prompt, "go", user_id=2)
        update = {"type": 7, "data": {"content": "went", "components": []}}
        async with http.post(callback_url(again) + "?with_response=1", json=update) as response:
            body = await response.json()
        assert body["interaction"]["response_message_id"] == prompt["id"]
        assert body["resource"]["message"]["content"] == "went"
        webhook = f"{standin.api_base}/webhooks/{standin.application_id}/{again['token']}"
        async with http.get(f"{webhook}/messages/@original") as response:
            assert (await response.json())["content"] == "went"
        status, body = await _post(http, webhook, {"content": "later"})
        assert status == 200 and body["content"] == "later"
        assert [c.method for c in standin.interaction_calls(again)] == ["POST", "GET", "POST"]

        with pytest.raises(ValueError, match="no message"):
            standin.component_interaction({"id": "1"}, "go", user_id=2)


class ShardedEchoBot(EchoBot, discord.AutoShardedClient):
    """The same bot, sharded as saybot scales out."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """No 5 s pause between shards' IDENTIFYs (Discord's max_concurrency 1 wants it)."""


async def test_auto_sharded_client_gets_a_session_per_shard() -> None:
    async with DiscordStandin(shards=2) as standin, discord_pointed_at(standin):
        client = ShardedEchoBot(standin.guild_id)
        async with running_client(client, standin.token, ready_timeout=5):
            assert sorted(i["shard"] for i in standin.identifies) == [[0, 2], [1, 2]]
            assert standin.calls("/gateway/bot")
            await standin.send_slash_command("echo", [{"name": "text", "value": "s"}], user_id=1)
            _, sent, _ = await client.outcome("echo")
            assert sent.content == "echo: s"
        owner = (standin.guild_id >> 22) % 2
        assert standin.dispatched_events("INTERACTION_CREATE", shard_id=owner)
        assert not standin.dispatched_events("INTERACTION_CREATE", shard_id=1 - owner)
