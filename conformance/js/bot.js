// discord.js against a Chorus server: login, ready, messageCreate, channel.send.
//
// Driven by tests/conformance (cargo test), which starts the server, sets up a guild, a
// channel, a human and a bot, runs this script and plays the human. Configuration comes
// from the environment: CHORUS_HTTP (http://host:port), BOT_TOKEN, GUILD_ID, CHANNEL_ID,
// HUMAN_ID. Prints `STEP <name> ...` lines and `DONE`; exits non-zero on any error,
// warning, shard error, unhandled rejection or time-out.
"use strict";

const { Client, Events, GatewayIntentBits } = require("discord.js");

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const HTTP = env("CHORUS_HTTP");
const TOKEN = env("BOT_TOKEN");
const GUILD_ID = env("GUILD_ID");
const CHANNEL_ID = env("CHANNEL_ID");
const HUMAN_ID = env("HUMAN_ID");
const TIMEOUT_MS = Number(process.env.SCENARIO_TIMEOUT || "60") * 1000;

const problems = [];
const fail = (what) => {
  problems.push(what);
  console.log(`FAIL ${what}`);
};
const step = (name, detail = "") => console.log(`STEP ${name} ${detail}`.trimEnd());

process.on("unhandledRejection", (e) => fail(`unhandled rejection: ${e && e.stack ? e.stack : e}`));
process.on("uncaughtException", (e) => fail(`uncaught exception: ${e && e.stack ? e.stack : e}`));

// Pointing discord.js at Chorus: the REST base; it asks GET /gateway/bot for the gateway.
const client = new Client({
  intents: [
    GatewayIntentBits.Guilds,
    GatewayIntentBits.GuildMessages,
    GatewayIntentBits.MessageContent,
  ],
  rest: { api: `${HTTP}/api` },
});

client.on(Events.Error, (e) => fail(`client error: ${e && e.stack ? e.stack : e}`));
client.on(Events.Warn, (w) => fail(`client warning: ${w}`));
client.on(Events.ShardError, (e) => fail(`shard error: ${e && e.stack ? e.stack : e}`));
client.on(Events.Invalidated, () => fail("session invalidated"));

let finished = false;
const finish = async () => {
  if (finished) return;
  finished = true;
  clearTimeout(timer);
  await client.destroy();
  if (problems.length > 0) {
    console.log(`FAILED with ${problems.length} problem(s)`);
    process.exit(1);
  }
  console.log("DONE");
  process.exit(0);
};
const timer = setTimeout(() => {
  fail(`time-out after ${TIMEOUT_MS} ms`);
  finish();
}, TIMEOUT_MS);

client.once(Events.ClientReady, (c) => {
  const guild = c.guilds.cache.get(GUILD_ID);
  if (!guild) return fail(`the guild ${GUILD_ID} is not in the cache after READY`);
  if (!guild.channels.cache.get(CHANNEL_ID)) return fail(`the channel ${CHANNEL_ID} is not in the guild`);
  // discord.js finds the bot's own role by its tags.botId.
  const own = guild.roles.botRoleFor(c.user);
  if (!own || !own.managed) return fail(`no managed role tagged with the bot: ${guild.roles.cache.map((r) => r.name)}`);
  step("ready", `user=${c.user.id} guild=${guild.name} role=${own.id}`);
});

client.on(Events.MessageCreate, async (message) => {
  if (message.author.id !== HUMAN_ID || message.content !== "ping") return;
  try {
    step("message", message.id);
    if (message.guildId !== GUILD_ID) fail(`message.guildId is ${message.guildId}`);
    if (!message.member) fail("message.member is missing");
    await message.channel.sendTyping();
    const sent = await message.channel.send("pong");
    if (sent.content !== "pong" || sent.author.id !== client.user.id) {
      fail(`channel.send returned ${JSON.stringify(sent.toJSON())}`);
    }
    step("reply", sent.id);
  } catch (e) {
    fail(`handling the message: ${e && e.stack ? e.stack : e}`);
  }
  await finish();
});

client.login(TOKEN).catch((e) => {
  fail(`login: ${e && e.stack ? e.stack : e}`);
  finish();
});
