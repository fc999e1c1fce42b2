-- Read models (SQLite dialect), written only by the projections crate.
--
-- GENERATED from projections/src/schema.rs (a test keeps them equal): change the
-- schema there and add a new migration; never edit this file once released.
-- Every index is a PRIMARY KEY or UNIQUE constraint so that a rebuild can swap
-- tables by renaming them. Ids are snowflakes, times Unix milliseconds, booleans
-- 0 or 1.

-- Checkpoints: each projection's position, written in the same transaction as its
-- changes. Every batch first locks its row, which serializes runners of several
-- processes.
CREATE TABLE projection_checkpoints (
    name TEXT NOT NULL PRIMARY KEY, -- projection name (read_models, publisher)
    position INTEGER NOT NULL -- last global log position applied
) STRICT;

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

-- Guild channels, from ChannelCreated; last_message_id from MessageCreated.
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
    PRIMARY KEY (id),
    UNIQUE (guild_id, id)
) STRICT;

-- Guild members, from MemberJoined.
CREATE TABLE members (
    guild_id INTEGER NOT NULL, -- the guild
    user_id INTEGER NOT NULL, -- the member
    joined_at INTEGER NOT NULL, -- when they joined, Unix ms
    nick TEXT, -- guild nickname
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
    PRIMARY KEY (channel_id, id)
) STRICT, WITHOUT ROWID;
