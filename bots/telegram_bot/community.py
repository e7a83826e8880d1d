"""``/settings`` in Telegram groups, and which group a message speaks for.

A group is a community (``bots.community``): its settings are keyed by the group's chat id.
Anyone in it may see them; only its admins may change them, checked with ``getChatMember``
(an anonymous admin, who posts as the group itself, is one). Private chats have none.
"""

from __future__ import annotations

from telegram import Bot, Message
from telegram.constants import ChatMemberStatus, ChatType

from bots.community import Community
from bots.errors import NotAnAdmin
from bots.messages import settings_text
from bots.settings_changes import parse_setting

PLATFORM = "telegram"
GROUPS = (ChatType.GROUP, ChatType.SUPERGROUP)
ADMINS = (ChatMemberStatus.OWNER, ChatMemberStatus.ADMINISTRATOR)

SETTINGS_HOW = (
    "Admins change them: /settings cloning off · saved_voices off · max_text 300 · rate 3 · "
    'quota 600 · block darn "oh heck" · unblock darn · exaggeration 0.7 '
    "(0 or off: back to the default)."
)
FOR_GROUPS = (
    "/settings is for groups: add me to a group, and its admins can choose there what I may do."
)


def server_of(message: Message) -> str | None:
    """The group whose settings apply to ``message``; None in a private chat."""
    return str(message.chat_id) if message.chat.type in GROUPS else None


async def is_admin(message: Message, bot: Bot) -> bool:
    """Whether the sender administers the group ``message`` was sent in."""
    if message.sender_chat is not None:  # an anonymous admin posts as the group itself
        return message.sender_chat.id == message.chat_id
    if message.from_user is None:
        return False
    member = await bot.get_chat_member(message.chat_id, message.from_user.id)
    return member.status in ADMINS


async def settings_reply(
    message: Message, args: str, bot: Bot, community: Community, user_id: str
) -> str:
    """The answer to ``/settings args``: the settings, changed first if ``args`` says so."""
    server = server_of(message)
    if server is None:
        return FOR_GROUPS
    community.operator.check_user(PLATFORM, user_id)
    if not args.strip():
        return settings_text(await community.view(PLATFORM, server), SETTINGS_HOW)
    if not await is_admin(message, bot):
        raise NotAnAdmin("only the group's admins can change its settings")
    change = parse_setting(args)
    changes = [change] if change is not None else []
    return settings_text(await community.change(PLATFORM, server, changes), SETTINGS_HOW)
