-- Read models (PostgreSQL dialect), written only by the projections crate.
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
    position BIGINT NOT NULL -- last global log position applied
);

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

-- Guild channels, from ChannelCreated; last_message_id from MessageCreated.
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
    PRIMARY KEY (id),
    UNIQUE (guild_id, id)
);

-- Guild members, from MemberJoined.
CREATE TABLE members (
    guild_id BIGINT NOT NULL, -- the guild
    user_id BIGINT NOT NULL, -- the member
    joined_at BIGINT NOT NULL, -- when they joined, Unix ms
    nick TEXT, -- guild nickname
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
    PRIMARY KEY (channel_id, id)
);
