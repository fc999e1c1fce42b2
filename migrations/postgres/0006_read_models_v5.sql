-- Read models (PostgreSQL dialect), written only by the projections crate.
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
    id BIGINT NOT NULL, -- user id (snowflake)
    username TEXT NOT NULL, -- unique username, lowercase
    bot BIGINT NOT NULL, -- 1 for bot accounts
    created_at BIGINT NOT NULL, -- registration time, Unix ms
    PRIMARY KEY (id),
    UNIQUE (username, id)
);

-- Guilds, from GuildCreated.
CREATE TABLE guilds (
    id BIGINT NOT NULL, -- guild id (snowflake; also its @everyone role's id)
    name TEXT NOT NULL, -- guild name
    owner_id BIGINT NOT NULL, -- the owner's user id
    everyone_permissions BIGINT NOT NULL, -- @everyone's permission bits (u64 bits in an i64)
    created_at BIGINT NOT NULL, -- creation time, Unix ms
    PRIMARY KEY (id)
);

-- Guild channels, from ChannelCreated / ChannelUpdated / ChannelDeleted and the overwrite events; last_message_id from MessageCreated.
CREATE TABLE channels (
    id BIGINT NOT NULL, -- channel id (snowflake)
    guild_id BIGINT, -- its guild; NULL for channels outside guilds
    type BIGINT NOT NULL, -- Discord channel type (0 text, 2 voice, 4 category)
    name TEXT NOT NULL, -- channel name
    position BIGINT NOT NULL, -- sorting position
    parent_id BIGINT, -- the category it is in
    topic TEXT, -- text channel topic
    nsfw BIGINT NOT NULL, -- 1 if age-restricted
    last_message_id BIGINT, -- newest message ever sent in it
    created_at BIGINT NOT NULL, -- creation time, Unix ms
    rate_limit_per_user BIGINT NOT NULL, -- slowmode: seconds between a member's messages (0 off)
    permission_overwrites TEXT NOT NULL, -- its own overwrites, a JSON array of {id, type, allow, deny}
    permission_synced BIGINT NOT NULL, -- 1 while synced with its category (the category's overwrites apply)
    deleted_at BIGINT, -- deletion time, Unix ms; NULL while it exists (queries skip deleted channels)
    PRIMARY KEY (id),
    UNIQUE (guild_id, id)
);

-- Guild members, from MemberJoined / MemberUpdated / MemberRemoved.
CREATE TABLE members (
    guild_id BIGINT NOT NULL, -- the guild
    user_id BIGINT NOT NULL, -- the member
    joined_at BIGINT NOT NULL, -- when they joined, Unix ms
    nick TEXT, -- guild nickname
    communication_disabled_until BIGINT, -- timed out until then, Unix ms
    mute BIGINT NOT NULL, -- 1 if server-muted in voice
    deaf BIGINT NOT NULL, -- 1 if server-deafened in voice
    PRIMARY KEY (guild_id, user_id),
    UNIQUE (user_id, guild_id)
);

-- Invites, from InviteCreated; uses counts InviteUsed.
CREATE TABLE invites (
    code TEXT NOT NULL, -- the invite code
    guild_id BIGINT NOT NULL, -- the guild it joins
    channel_id BIGINT NOT NULL, -- the channel it shows
    inviter_id BIGINT NOT NULL, -- who made it
    max_age BIGINT NOT NULL, -- lifetime in seconds; 0 never expires
    max_uses BIGINT NOT NULL, -- uses allowed; 0 unlimited
    uses BIGINT NOT NULL, -- times used
    temporary BIGINT NOT NULL, -- 1 if membership is temporary
    created_at BIGINT NOT NULL, -- creation time, Unix ms
    PRIMARY KEY (code)
);

-- Messages, from MessageCreated / MessageEdited / MessageDeleted. A deleted message keeps its row with deleted_at set; queries skip it.
CREATE TABLE messages (
    id BIGINT NOT NULL, -- message id (snowflake, increases with revision)
    channel_id BIGINT NOT NULL, -- its channel
    guild_id BIGINT, -- its channel's guild
    author_id BIGINT NOT NULL, -- the author's user id
    content TEXT NOT NULL, -- current content
    nonce TEXT, -- the nonce it was sent with
    tts BIGINT NOT NULL, -- 1 for text-to-speech
    created_at BIGINT NOT NULL, -- send time, Unix ms
    edited_at BIGINT, -- last edit time, Unix ms
    deleted_at BIGINT, -- deletion time, Unix ms; NULL while live
    revision BIGINT NOT NULL, -- channel stream revision of the last event that changed it
    pinned_at BIGINT, -- when it was pinned, Unix ms; NULL when not pinned
    mention_everyone BIGINT NOT NULL, -- 1 if it mentions @everyone or @here and its author may
    PRIMARY KEY (channel_id, id)
);

-- Roles (@everyone included), from GuildCreated and the role events.
CREATE TABLE roles (
    guild_id BIGINT NOT NULL, -- the guild
    id BIGINT NOT NULL, -- role id (the guild's id for @everyone)
    name TEXT NOT NULL, -- role name
    color BIGINT NOT NULL, -- RGB colour, 0 for none
    hoist BIGINT NOT NULL, -- 1 if shown separately in the member list
    position BIGINT NOT NULL, -- 0 for @everyone, 1 and above for the others
    permissions BIGINT NOT NULL, -- permission bits (u64 bits in an i64)
    managed BIGINT NOT NULL, -- 1 if managed by an integration
    mentionable BIGINT NOT NULL, -- 1 if anyone may mention it
    bot_id BIGINT, -- for a bot's managed role, the bot (Discord's tags.bot_id)
    PRIMARY KEY (guild_id, id)
);

-- The roles of each member, from MemberUpdated.
CREATE TABLE member_roles (
    guild_id BIGINT NOT NULL, -- the guild
    user_id BIGINT NOT NULL, -- the member
    role_id BIGINT NOT NULL, -- a role they have (never @everyone)
    PRIMARY KEY (guild_id, user_id, role_id)
);

-- Bans, from MemberBanned / MemberUnbanned.
CREATE TABLE bans (
    guild_id BIGINT NOT NULL, -- the guild
    user_id BIGINT NOT NULL, -- the banned user
    reason TEXT, -- the audit reason given with the ban
    created_at BIGINT NOT NULL, -- ban time, Unix ms
    PRIMARY KEY (guild_id, user_id)
);

-- The audit log: one entry per moderation event, full history, with its actor and reason.
CREATE TABLE audit_log (
    guild_id BIGINT NOT NULL, -- the guild
    id BIGINT NOT NULL, -- entry id: a snowflake of the event's time and global position
    user_id BIGINT, -- who acted
    target_id BIGINT, -- what was acted on (user, role, channel, ...)
    action_type BIGINT NOT NULL, -- Discord's audit log event number
    changes TEXT NOT NULL, -- JSON array of {key, old_value?, new_value?}
    options TEXT, -- JSON object of optional entry info
    reason TEXT, -- X-Audit-Log-Reason
    position BIGINT NOT NULL, -- global log position of the event
    PRIMARY KEY (guild_id, id)
);
