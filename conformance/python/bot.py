"""discord.py against a Chorus server: the conformance scenario.

Driven by tests/conformance (cargo test), which starts the server, sets up a guild, a
channel, a human and a bot, runs this script and plays the human. Configuration comes
from the environment: CHORUS_HTTP (http://host:port), CHORUS_WS (ws://host:port),
BOT_TOKEN, GUILD_ID, CHANNEL_ID, HUMAN_ID.

The script prints `STEP <name> ...` lines as the scenario advances and `DONE` at the
end, and exits non-zero on any exception, any error or warning that discord.py logs
(it logs failures in event handlers and payload parsers instead of raising), and on a
time-out.
"""

import asyncio
import logging
import os
import sys

import discord
import yarl
from discord.ext import commands

HTTP = os.environ["CHORUS_HTTP"]
WS = os.environ["CHORUS_WS"]
TOKEN = os.environ["BOT_TOKEN"]
GUILD_ID = int(os.environ["GUILD_ID"])
CHANNEL_ID = int(os.environ["CHANNEL_ID"])
HUMAN_ID = int(os.environ["HUMAN_ID"])
TIMEOUT = float(os.environ.get("SCENARIO_TIMEOUT", "60"))

# Pointing discord.py at Chorus: the REST base and the gateway it connects to.
discord.http.Route.BASE = f"{HTTP}/api/v10"
discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(f"{WS}/")

problems = []


def fail(what):
    problems.append(what)
    print(f"FAIL {what}", flush=True)


class Recorder(logging.Handler):
    """Every warning or error discord.py logs fails the scenario."""

    # Warnings about optional voice dependencies say nothing about Chorus.
    IGNORED = ("PyNaCl is not installed", "davey is not installed")

    def emit(self, record):
        message = record.getMessage()
        if any(message.startswith(i) for i in self.IGNORED):
            return
        if record.exc_info:
            import traceback

            message += "\n" + "".join(traceback.format_exception(*record.exc_info))
        fail(f"{record.levelname} {record.name}: {message}")


logging.basicConfig(level=logging.INFO, stream=sys.stderr)
logging.getLogger().addHandler(Recorder(level=logging.WARNING))


def step(name, detail=""):
    print(f"STEP {name} {detail}".rstrip(), flush=True)


intents = discord.Intents.default()
intents.message_content = True
bot = commands.Bot(command_prefix="!", intents=intents)
events = {}


def arrived(name, value=None):
    fut = events.setdefault(name, asyncio.get_running_loop().create_future())
    if not fut.done():
        fut.set_result(value)


async def awaited(name):
    fut = events.setdefault(name, asyncio.get_running_loop().create_future())
    return await fut


@bot.event
async def on_error(event, *args, **kwargs):
    import traceback

    fail(f"exception in {event}: {traceback.format_exc()}")


@bot.event
async def on_command_error(ctx, error):
    fail(f"command {ctx.command} failed: {error!r}")


@bot.event
async def on_ready():
    guild = bot.get_guild(GUILD_ID)
    if guild is None:
        fail(f"the guild {GUILD_ID} is not in the cache after READY")
        return
    channel = guild.get_channel(CHANNEL_ID)
    if channel is None:
        fail(f"the channel {CHANNEL_ID} is not in the guild")
        return
    if guild.me is None:
        fail("guild.me is missing (no member for the bot in GUILD_CREATE)")
        return
    # discord.py finds the bot's own role by its tags.bot_id.
    own = guild.self_role
    if own is None or not own.is_bot_managed() or own not in guild.me.roles:
        fail(f"no managed role tagged with the bot: {guild.roles!r}")
        return
    step("ready", f"user={bot.user.id} guild={guild.name} role={own.id}")
    arrived("ready")


@bot.event
async def on_typing(channel, user, when):
    if user.id == HUMAN_ID and channel.id == CHANNEL_ID:
        arrived("typing", user)


@bot.event
async def on_raw_bulk_message_delete(payload):
    arrived("bulk", payload)


@bot.listen("on_message")
async def heard(message):
    if message.author.id == HUMAN_ID and message.content == "ping":
        arrived("ping", message)


@bot.event
async def on_guild_role_create(role):
    arrived(f"role {role.id}", role)


@bot.event
async def on_guild_channel_update(before, after):
    arrived(f"channel {after.id}", after)


@bot.command()
async def perms(ctx):
    """Answers with the bot's guild permissions, as its cache knows them."""
    me = ctx.guild.me
    p = me.guild_permissions
    await ctx.send(f"perms value={p.value} manage_roles={p.manage_roles}")
    step("command", f"value={p.value} manage_roles={p.manage_roles}")
    arrived("command")


async def scenario():
    await awaited("ready")
    typist = await awaited("typing")
    # TYPING_START in a guild carries the member, which discord.py turns into a Member.
    if not isinstance(typist, discord.Member) or typist.guild.id != GUILD_ID:
        fail(f"the typing user is not the guild's member: {typist!r}")
    step("typing", str(typist.id))
    # fetch_user is GET /users/{id}.
    human = await bot.fetch_user(HUMAN_ID)
    if human.id != HUMAN_ID or human.bot:
        fail(f"fetch_user returned {human!r}")
    message = await awaited("ping")
    step("message", str(message.id))

    # typing() posts /channels/{id}/typing (and fails the scenario if that fails).
    async with message.channel.typing():
        reply = await message.reply("pong")
    # discord.py copies the member of the REST answer over its cached guild.me, so that
    # member has to carry the bot's roles as MESSAGE_CREATE does.
    if not message.guild.me.guild_permissions.manage_roles:
        fail(f"the reply's member dropped the bot's roles: {reply.author!r}")
    step("reply", str(reply.id))

    guild = message.guild
    role = await guild.create_role(name="muted", permissions=discord.Permissions.none())
    step("role", str(role.id))
    await awaited(f"role {role.id}")
    if guild.get_role(role.id) is None:
        fail("the new role is not in the guild cache")
    step("role_event")

    channel = message.channel
    await channel.set_permissions(role, send_messages=False)
    step("overwrite")
    updated = await awaited(f"channel {channel.id}")
    overwrite = updated.overwrites_for(role)
    if overwrite.send_messages is not False:
        fail(f"CHANNEL_UPDATE does not carry the overwrite: {overwrite!r}")
    step("channel_update")

    invite = await channel.create_invite(max_age=3600)
    if invite.guild is None or invite.guild.id != GUILD_ID:
        fail(f"the invite names the wrong guild: {invite.guild!r}")
    step("invite", invite.code)

    # purge() reads the history and deletes what it keeps in bulk (MESSAGE_DELETE_BULK).
    doomed = [await channel.send(f"purge me {k}") for k in range(3)]
    deleted = await channel.purge(limit=3, check=lambda m: m.author == bot.user)
    if sorted(m.id for m in deleted) != sorted(m.id for m in doomed):
        fail(f"purge deleted {deleted!r}, not {doomed!r}")
    payload = await awaited("bulk")
    if payload.message_ids != {m.id for m in doomed} or payload.channel_id != channel.id:
        fail(f"MESSAGE_DELETE_BULK names the wrong messages: {payload!r}")
    step("purge", str(len(deleted)))

    # pin() and pins() use Discord's /messages/pins routes (CHANNEL_PINS_UPDATE follows).
    keep = await channel.send("pin me")
    await keep.pin()
    pins = [m async for m in channel.pins()]
    if [m.id for m in pins] != [keep.id] or not pins[0].pinned or pins[0].pinned_at is None:
        fail(f"pins() returned {pins!r}")
    await keep.unpin()
    if [m async for m in channel.pins()]:
        fail("the unpinned message is still listed")
    step("pins", str(keep.id))

    step("awaiting_command")
    await awaited("command")


async def main():
    async with bot:
        runner = asyncio.create_task(bot.start(TOKEN))
        work = asyncio.create_task(scenario())
        done, _ = await asyncio.wait(
            {runner, work}, timeout=TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
        if not done:
            fail(f"time-out after {TIMEOUT} s")
        for task in done:
            if task.exception() is not None:
                e = task.exception()
                fail(f"{type(e).__name__}: {e}")
        if runner in done and work not in done and not problems:
            fail("the client stopped before the scenario finished")
        work.cancel()
        await bot.close()
        runner.cancel()


def on_loop_exception(loop, context):
    fail(f"unhandled in the event loop: {context.get('message')} {context.get('exception')!r}")


if __name__ == "__main__":
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(on_loop_exception)
    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    if problems:
        print(f"FAILED with {len(problems)} problem(s)", flush=True)
        sys.exit(1)
    print("DONE", flush=True)
