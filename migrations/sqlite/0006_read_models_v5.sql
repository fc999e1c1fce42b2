-- Read models (SQLite dialect), written only by the projections crate.
--
-- GENERATED from projections/src/schema.rs (a test keeps them equal): change the
-- schema there and regenerate with CHORUS_WRITE_MIGRATIONS=1; once released,
-- never edit this file: a later schema gets a new file (schema::MIGRATION_FILE).
-- Read models are derived from the event log, so this migration does not move
-- rows: it drops the read-model tables, creates the current ones and resets the
-- read models' checkpoint, and the projection runner rebuilds them from the log.
-- Every index is a PRIMARY KEY or UNIQUE constraint so that a rebuild can swap
-- tables by renaming them. Ids are snowflakes, times Unix milliseconds, booleans
-- 0 or 1.

DROP TABLE IF EXISTS users;
DROP TABLE IF EXISTS guilds;
DROP TABLE IF EXISTS channels;
DROP TABLE IF EXISTS members;
DROP TABLE IF EXISTS invites;
DROP TABLE IF EXISTS messages;
DROP TABLE IF EXISTS roles;
DROP TABLE IF EXISTS member_roles;
DROP TABLE IF EXISTS bans;
DROP TABLE IF EXISTS audit_log;
DELETE FROM projection_checkpoints WHERE name = 'read_models';

-- Users (humans and bots), from UserRegistered.
CREATE TABLE users (
    id INTEGER NOT NULL, -- user id (snowflake)
    username TEXT NOT NULL, -- unique username, lowercase
    bot INTEGER NOT NULL, -- 1 for bot accounts
    created_at INTEGER NOT NULL, -- registration time, Unix ms
    PRIMARY KEY (id),
    UNIQUE (username, id)
) STRICT;

-- Guilds, from GuildCreated.
CREATE TABLE guilds (
    id INTEGER NOT NULL, -- guild id (snowflake; also its @everyone role's id)
    name TEXT NOT NULL, -- guild name
    owner_id INTEGER NOT NULL, -- the owner's user id
    everyone_permissions INTEGER NOT NULL, -- @everyone's permission bits (u64 bits in an i64)
    created_at INTEGER NOT NULL, -- creation time, Unix ms
    PRIMARY KEY (id)
) STRICT;

-- Guild channels, from ChannelCreated / ChannelUpdated / ChannelDeleted and the overwrite events; last_message_id from MessageCreated.
CREATE TABLE channels (
    id INTEGER NOT NULL, -- channel id (snowflake)
    guild_id INTEGER, -- its guild; NULL for channels outside guilds
    type INTEGER NOT NULL, -- Discord channel type (0 text, 2 voice, 4 category)
    name TEXT NOT NULL, -- channel name
    position INTEGER NOT NULL, -- sorting position
    parent_id INTEGER, -- the category it is in
    topic TEXT, -- text channel topic
    nsfw INTEGER NOT NULL, -- 1 if age-restricted
    last_message_id INTEGER, -- newest message ever sent in it
    created_at INTEGER NOT NULL, -- creation time, Unix ms
    rate_limit_per_user INTEGER NOT NULL, -- slowmode: seconds between a member's messages (0 off)
    permission_overwrites TEXT NOT NULL, -- its own overwrites, a JSON array of {id, type, allow, deny}
    permission_synced INTEGER NOT NULL, -- 1 while synced with its category (the category's overwrites apply)
    deleted_at INTEGER, -- deletion time, Unix ms; NULL while it exists (queries skip deleted channels)
    PRIMARY KEY (id),
    UNIQUE (guild_id, id)
) STRICT;

-- Guild members, from MemberJoined / MemberUpdated / MemberRemoved.
CREATE TABLE members (
    guild_id INTEGER NOT NULL, -- the guild
    user_id INTEGER NOT NULL, -- the member
    joined_at INTEGER NOT NULL, -- when they joined, Unix ms
    nick TEXT, -- guild nickname
    communication_disabled_until INTEGER, -- timed out until then, Unix ms
    mute INTEGER NOT NULL, -- 1 if server-muted in voice
    deaf INTEGER NOT NULL, -- 1 if server-deafened in voice
    PRIMARY KEY (guild_id, user_id),
    UNIQUE (user_id, guild_id)
) STRICT, WITHOUT ROWID;

-- Invites, from InviteCreated; uses counts InviteUsed.
CREATE TABLE invites (
    code TEXT NOT NULL, -- the invite code
    guild_id INTEGER NOT NULL, -- the guild it joins
    channel_id INTEGER NOT NULL, -- the channel it shows
    inviter_id INTEGER NOT NULL, -- who made it
    max_age INTEGER NOT NULL, -- lifetime in seconds; 0 never expires
    max_uses INTEGER NOT NULL, -- uses allowed; 0 unlimited
    uses INTEGER NOT NULL, -- times used
    temporary INTEGER NOT NULL, -- 1 if membership is temporary
    created_at INTEGER NOT NULL, -- creation time, Unix ms
    PRIMARY KEY (code)
) STRICT;

-- Messages, from MessageCreated / MessageEdited / MessageDeleted. A deleted message keeps its row with deleted_at set; queries skip it.
CREATE TABLE messages (
    id INTEGER NOT NULL, -- message id (snowflake, increases with revision)
    channel_id INTEGER NOT NULL, -- its channel
    guild_id INTEGER, -- its channel's guild
    author_id INTEGER NOT NULL, -- the author's user id
    content TEXT NOT NULL, -- current content
    nonce TEXT, -- the nonce it was sent with
    tts INTEGER NOT NULL, -- 1 for text-to-speech
    created_at INTEGER NOT NULL, -- send time, Unix ms
    edited_at INTEGER, -- last edit time, Unix ms
    deleted_at INTEGER, -- deletion time, Unix ms; NULL while live
    revision INTEGER NOT NULL, -- channel stream revision of the last event that changed it
    pinned_at INTEGER, -- when it was pinned, Unix ms; NULL when not pinned
    mention_everyone INTEGER NOT NULL, -- 1 if it mentions @everyone or @here and its author may
    PRIMARY KEY (channel_id, id)
) STRICT, WITHOUT ROWID;

-- Roles (@everyone included), from GuildCreated and the role events.
CREATE TABLE roles (
    guild_id INTEGER NOT NULL, -- the guild
    id INTEGER NOT NULL, -- role id (the guild's id for @everyone)
    name TEXT NOT NULL, -- role name
    color INTEGER NOT NULL, -- RGB colour, 0 for none
    hoist INTEGER NOT NULL, -- 1 if shown separately in the member list
    position INTEGER NOT NULL, -- 0 for @everyone, 1 and above for the others
    permissions INTEGER NOT NULL, -- permission bits (u64 bits in an i64)
    managed INTEGER NOT NULL, -- 1 if managed by an integration
    mentionable INTEGER NOT NULL, -- 1 if anyone may mention it
    bot_id INTEGER, -- for a bot's managed role, the bot (Discord's tags.bot_id)
    PRIMARY KEY (guild_id, id)
) STRICT, WITHOUT ROWID;

-- The roles of each member, from MemberUpdated.
CREATE TABLE member_roles (
    guild_id INTEGER NOT NULL, -- the guild
    user_id INTEGER NOT NULL, -- the member
    role_id INTEGER NOT NULL, -- a role they have (never @everyone)
    PRIMARY KEY (guild_id, user_id, role_id)
) STRICT, WITHOUT ROWID;

-- Bans, from MemberBanned / MemberUnbanned.
CREATE TABLE bans (
    guild_id INTEGER NOT NULL, -- the guild
    user_id INTEGER NOT NULL, -- the banned user
    reason TEXT, -- the audit reason given with the ban
    created_at INTEGER NOT NULL, -- ban time, Unix ms
    PRIMARY KEY (guild_id, user_id)
) STRICT, WITHOUT ROWID;

-- The audit log: one entry per moderation event, full history, with its actor and reason.
CREATE TABLE audit_log (
    guild_id INTEGER NOT NULL, -- the guild
    id INTEGER NOT NULL, -- entry id: a snowflake of the event's time and global position
    user_id INTEGER, -- who acted
    target_id INTEGER, -- what was acted on (user, role, channel, ...)
    action_type INTEGER NOT NULL, -- Discord's audit log event number
    changes TEXT NOT NULL, -- JSON array of {key, old_value?, new_value?}
    options TEXT, -- JSON object of optional entry info
    reason TEXT, -- X-Audit-Log-Reason
    position INTEGER NOT NULL, -- global log position of the event
    PRIMARY KEY (guild_id, id)
) STRICT, WITHOUT ROWID;
