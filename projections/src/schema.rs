//! The read-model schema, defined once here for both SQL dialects.
//!
//! The migration files `migrations/{sqlite,postgres}/0002_read_models.sql` are this
//! module's [`migration`] output (a test keeps them equal), and [`rebuild`](crate::rebuild)
//! creates its fresh shadow tables from the same definitions, so a rebuilt table always
//! has the schema of the one it replaces.
//!
//! Every index is a table constraint (`PRIMARY KEY`, `UNIQUE`), never a named
//! `CREATE INDEX`: SQLite renames a table's constraint indexes along with the table, and
//! PostgreSQL's are renamed explicitly, which is what lets a rebuild swap tables by
//! renaming them.
//!
//! Conventions: ids are `BIGINT` snowflakes (bit-compatible with `u64`), times are `BIGINT`
//! Unix milliseconds, booleans are `BIGINT` 0 or 1 (the one integer type both dialects
//! read back the same way through `sqlx::Any`).

use crate::db::Dialect;

/// The type of a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// A 64-bit integer: ids, times, counts, booleans.
    Int,
    /// UTF-8 text.
    Text,
}

/// One column of a read-model table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub ty: ColumnType,
    pub nullable: bool,
    /// What the column holds (written into the migration as a comment).
    pub doc: &'static str,
}

const fn col(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: false,
        doc,
    }
}

const fn null(name: &'static str, ty: ColumnType, doc: &'static str) -> Column {
    Column {
        name,
        ty,
        nullable: true,
        doc,
    }
}

use ColumnType::{Int, Text};

const USERS: &[Column] = &[
    col("id", Int, "user id (snowflake)"),
    col("username", Text, "unique username, lowercase"),
    col("bot", Int, "1 for bot accounts"),
    col("created_at", Int, "registration time, Unix ms"),
];

const GUILDS: &[Column] = &[
    col(
        "id",
        Int,
        "guild id (snowflake; also its @everyone role's id)",
    ),
    col("name", Text, "guild name"),
    col("owner_id", Int, "the owner's user id"),
    col(
        "everyone_permissions",
        Int,
        "@everyone's permission bits (u64 bits in an i64)",
    ),
    col("created_at", Int, "creation time, Unix ms"),
];

const CHANNELS: &[Column] = &[
    col("id", Int, "channel id (snowflake)"),
    null(
        "guild_id",
        Int,
        "its guild; NULL for channels outside guilds",
    ),
    col(
        "type",
        Int,
        "Discord channel type (0 text, 2 voice, 4 category)",
    ),
    col("name", Text, "channel name"),
    col("position", Int, "sorting position"),
    null("parent_id", Int, "the category it is in"),
    null("topic", Text, "text channel topic"),
    col("nsfw", Int, "1 if age-restricted"),
    null("last_message_id", Int, "newest message ever sent in it"),
    col("created_at", Int, "creation time, Unix ms"),
    col(
        "rate_limit_per_user",
        Int,
        "slowmode: seconds between a member's messages (0 off)",
    ),
    col(
        "permission_overwrites",
        Text,
        "its own overwrites, a JSON array of {id, type, allow, deny}",
    ),
    col(
        "permission_synced",
        Int,
        "1 while synced with its category (the category's overwrites apply)",
    ),
    null(
        "deleted_at",
        Int,
        "deletion time, Unix ms; NULL while it exists (queries skip deleted channels)",
    ),
];

const MEMBERS: &[Column] = &[
    col("guild_id", Int, "the guild"),
    col("user_id", Int, "the member"),
    col("joined_at", Int, "when they joined, Unix ms"),
    null("nick", Text, "guild nickname"),
    null(
        "communication_disabled_until",
        Int,
        "timed out until then, Unix ms",
    ),
    col("mute", Int, "1 if server-muted in voice"),
    col("deaf", Int, "1 if server-deafened in voice"),
];

const ROLES: &[Column] = &[
    col("guild_id", Int, "the guild"),
    col("id", Int, "role id (the guild's id for @everyone)"),
    col("name", Text, "role name"),
    col("color", Int, "RGB colour, 0 for none"),
    col("hoist", Int, "1 if shown separately in the member list"),
    col(
        "position",
        Int,
        "0 for @everyone, 1 and above for the others",
    ),
    col("permissions", Int, "permission bits (u64 bits in an i64)"),
    col("managed", Int, "1 if managed by an integration"),
    col("mentionable", Int, "1 if anyone may mention it"),
    null(
        "bot_id",
        Int,
        "for a bot's managed role, the bot (Discord's tags.bot_id)",
    ),
];

const MEMBER_ROLES: &[Column] = &[
    col("guild_id", Int, "the guild"),
    col("user_id", Int, "the member"),
    col("role_id", Int, "a role they have (never @everyone)"),
];

const BANS: &[Column] = &[
    col("guild_id", Int, "the guild"),
    col("user_id", Int, "the banned user"),
    null("reason", Text, "the audit reason given with the ban"),
    col("created_at", Int, "ban time, Unix ms"),
];

const AUDIT_LOG: &[Column] = &[
    col("guild_id", Int, "the guild"),
    col(
        "id",
        Int,
        "entry id: a snowflake of the event's time and global position",
    ),
    null("user_id", Int, "who acted"),
    null(
        "target_id",
        Int,
        "what was acted on (user, role, channel, ...)",
    ),
    col("action_type", Int, "Discord's audit log event number"),
    col(
        "changes",
        Text,
        "JSON array of {key, old_value?, new_value?}",
    ),
    null("options", Text, "JSON object of optional entry info"),
    null("reason", Text, "X-Audit-Log-Reason"),
    col("position", Int, "global log position of the event"),
];

const INVITES: &[Column] = &[
    col("code", Text, "the invite code"),
    col("guild_id", Int, "the guild it joins"),
    col("channel_id", Int, "the channel it shows"),
    col("inviter_id", Int, "who made it"),
    col("max_age", Int, "lifetime in seconds; 0 never expires"),
    col("max_uses", Int, "uses allowed; 0 unlimited"),
    col("uses", Int, "times used"),
    col("temporary", Int, "1 if membership is temporary"),
    col("created_at", Int, "creation time, Unix ms"),
];

const MESSAGES: &[Column] = &[
    col("id", Int, "message id (snowflake, increases with revision)"),
    col("channel_id", Int, "its channel"),
    null("guild_id", Int, "its channel's guild"),
    col("author_id", Int, "the author's user id"),
    col("content", Text, "current content"),
    null("nonce", Text, "the nonce it was sent with"),
    col("tts", Int, "1 for text-to-speech"),
    col("created_at", Int, "send time, Unix ms"),
    null("edited_at", Int, "last edit time, Unix ms"),
    null("deleted_at", Int, "deletion time, Unix ms; NULL while live"),
    col(
        "revision",
        Int,
        "channel stream revision of the last event that changed it",
    ),
    null(
        "pinned_at",
        Int,
        "when it was pinned, Unix ms; NULL when not pinned",
    ),
    col(
        "mention_everyone",
        Int,
        "1 if it mentions @everyone or @here and its author may",
    ),
];

/// A read-model table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Users,
    Guilds,
    Channels,
    Members,
    Invites,
    Messages,
    Roles,
    MemberRoles,
    Bans,
    AuditLog,
}

impl Table {
    /// Every read-model table, in creation order.
    pub const ALL: [Table; 10] = [
        Table::Users,
        Table::Guilds,
        Table::Channels,
        Table::Members,
        Table::Invites,
        Table::Messages,
        Table::Roles,
        Table::MemberRoles,
        Table::Bans,
        Table::AuditLog,
    ];

    /// The live table's name (also the name of the projection that rebuilds only it).
    pub const fn name(self) -> &'static str {
        match self {
            Table::Users => "users",
            Table::Guilds => "guilds",
            Table::Channels => "channels",
            Table::Members => "members",
            Table::Invites => "invites",
            Table::Messages => "messages",
            Table::Roles => "roles",
            Table::MemberRoles => "member_roles",
            Table::Bans => "bans",
            Table::AuditLog => "audit_log",
        }
    }

    /// The table for a name.
    pub fn from_name(name: &str) -> Option<Table> {
        Table::ALL.into_iter().find(|t| t.name() == name)
    }

    /// What the table holds.
    pub const fn doc(self) -> &'static str {
        match self {
            Table::Users => "Users (humans and bots), from UserRegistered.",
            Table::Guilds => "Guilds, from GuildCreated.",
            Table::Channels => {
                "Guild channels, from ChannelCreated / ChannelUpdated / ChannelDeleted and the \
                 overwrite events; last_message_id from MessageCreated."
            }
            Table::Members => "Guild members, from MemberJoined / MemberUpdated / MemberRemoved.",
            Table::Invites => "Invites, from InviteCreated; uses counts InviteUsed.",
            Table::Messages => {
                "Messages, from MessageCreated / MessageEdited / MessageDeleted. A deleted \
                 message keeps its row with deleted_at set; queries skip it."
            }
            Table::Roles => "Roles (@everyone included), from GuildCreated and the role events.",
            Table::MemberRoles => "The roles of each member, from MemberUpdated.",
            Table::Bans => "Bans, from MemberBanned / MemberUnbanned.",
            Table::AuditLog => {
                "The audit log: one entry per moderation event, full history, with its \
                 actor and reason."
            }
        }
    }

    /// The table's columns, in order.
    pub const fn columns(self) -> &'static [Column] {
        match self {
            Table::Users => USERS,
            Table::Guilds => GUILDS,
            Table::Channels => CHANNELS,
            Table::Members => MEMBERS,
            Table::Invites => INVITES,
            Table::Messages => MESSAGES,
            Table::Roles => ROLES,
            Table::MemberRoles => MEMBER_ROLES,
            Table::Bans => BANS,
            Table::AuditLog => AUDIT_LOG,
        }
    }

    /// The primary key's columns.
    pub const fn primary_key(self) -> &'static [&'static str] {
        match self {
            Table::Users | Table::Guilds | Table::Channels => &["id"],
            // Clustered by channel: a page of messages is one range of the key.
            Table::Messages => &["channel_id", "id"],
            Table::Members => &["guild_id", "user_id"],
            Table::Invites => &["code"],
            Table::Roles => &["guild_id", "id"],
            Table::MemberRoles => &["guild_id", "user_id", "role_id"],
            Table::Bans => &["guild_id", "user_id"],
            Table::AuditLog => &["guild_id", "id"],
        }
    }

    /// Further unique keys; each is an index serving one query.
    pub const fn unique_keys(self) -> &'static [&'static [&'static str]] {
        match self {
            // user_by_name
            Table::Users => &[&["username", "id"]],
            Table::Guilds | Table::Invites => &[],
            // guild_channels
            Table::Channels => &[&["guild_id", "id"]],
            // guild_ids_of, user_guilds
            Table::Members => &[&["user_id", "guild_id"]],
            // Message ids are unique across channels, and every look-up names the channel.
            Table::Messages => &[],
            Table::Roles | Table::MemberRoles | Table::Bans | Table::AuditLog => &[],
        }
    }

    /// Whether SQLite stores the table as a b-tree on its primary key (`WITHOUT ROWID`):
    /// one tree instead of a rowid table plus a key index, for composite keys.
    pub const fn without_rowid(self) -> bool {
        matches!(
            self,
            Table::Members
                | Table::Messages
                | Table::Roles
                | Table::MemberRoles
                | Table::Bans
                | Table::AuditLog
        )
    }

    /// The columns a dump is sorted by (the primary key).
    pub fn order_by(self) -> String {
        self.primary_key().join(", ")
    }
}

/// The checkpoint table's name. Not part of any projection: it survives rebuilds.
pub const CHECKPOINTS: &str = "projection_checkpoints";

/// `CREATE TABLE` for `table` named `physical`, in `dialect`, without comments.
pub fn create_table(dialect: Dialect, table: Table, physical: &str) -> String {
    render_table(dialect, table, physical, false)
}

fn sql_type(dialect: Dialect, ty: ColumnType) -> &'static str {
    match (dialect, ty) {
        (Dialect::Sqlite, Int) => "INTEGER",
        (Dialect::Postgres, Int) => "BIGINT",
        (_, Text) => "TEXT",
    }
}

fn render_table(dialect: Dialect, table: Table, physical: &str, comments: bool) -> String {
    let mut lines = Vec::new();
    for c in table.columns() {
        let ty = sql_type(dialect, c.ty);
        let not_null = if c.nullable { "" } else { " NOT NULL" };
        let comment = if comments {
            format!(" -- {}", c.doc)
        } else {
            String::new()
        };
        lines.push((format!("    {} {ty}{not_null}", c.name), comment));
    }
    lines.push((
        format!("    PRIMARY KEY ({})", table.primary_key().join(", ")),
        String::new(),
    ));
    for key in table.unique_keys() {
        lines.push((format!("    UNIQUE ({})", key.join(", ")), String::new()));
    }
    let n = lines.len();
    let body: Vec<String> = lines
        .into_iter()
        .enumerate()
        .map(|(i, (l, c))| {
            let comma = if i + 1 < n { "," } else { "" };
            format!("{l}{comma}{c}")
        })
        .collect();
    let strict = match dialect {
        Dialect::Sqlite if table.without_rowid() => " STRICT, WITHOUT ROWID",
        Dialect::Sqlite => " STRICT",
        Dialect::Postgres => "",
    };
    format!("CREATE TABLE {physical} (\n{}\n){strict}", body.join("\n"))
}

/// The file name of the read-model migration that [`migration`] generates.
///
/// Read models are derived data, so a schema change does not migrate rows: the newest
/// read-model migration drops every read-model table, creates the current ones and
/// deletes the read models' checkpoint, and the runner rebuilds them from the log at
/// start-up. Earlier read-model migrations (`0002_read_models.sql`) are released and
/// frozen; a schema change released after this one gets a new file name here, and the
/// old file stays as it was.
pub const MIGRATION_FILE: &str = "0006_read_models_v5.sql";

/// Names of read-model tables that released migrations created: the generated
/// migration drops each one that still exists before it creates the current tables.
const RELEASED_TABLES: &[&str] = &[
    "users",
    "guilds",
    "channels",
    "members",
    "invites",
    "messages",
    "roles",
    "member_roles",
    "bans",
    "audit_log",
];

/// The text of the migration [`MIGRATION_FILE`] for `dialect`.
pub fn migration(dialect: Dialect) -> String {
    let name = match dialect {
        Dialect::Sqlite => "SQLite",
        Dialect::Postgres => "PostgreSQL",
    };
    let mut out = format!(
        "-- Read models ({name} dialect), written only by the projections crate.\n\
         --\n\
         -- GENERATED from projections/src/schema.rs (a test keeps them equal): change the\n\
         -- schema there and regenerate with CHORUS_WRITE_MIGRATIONS=1; once released,\n\
         -- never edit this file: a later schema gets a new file (schema::MIGRATION_FILE).\n\
         -- Read models are derived from the event log, so this migration does not move\n\
         -- rows: it drops the read-model tables, creates the current ones and resets the\n\
         -- read models' checkpoint, and the projection runner rebuilds them from the log.\n\
         -- Every index is a PRIMARY KEY or UNIQUE constraint so that a rebuild can swap\n\
         -- tables by renaming them. Ids are snowflakes, times Unix milliseconds, booleans\n\
         -- 0 or 1.\n\n"
    );
    let mut dropped: Vec<&str> = RELEASED_TABLES.to_vec();
    for t in Table::ALL {
        if !dropped.contains(&t.name()) {
            dropped.push(t.name());
        }
    }
    for table in dropped {
        out.push_str(&format!("DROP TABLE IF EXISTS {table};\n"));
    }
    out.push_str(&format!(
        "DELETE FROM {CHECKPOINTS} WHERE name = '{}';\n",
        crate::READ_MODELS
    ));
    for t in Table::ALL {
        out.push_str(&format!("\n-- {}\n", t.doc()));
        out.push_str(&render_table(dialect, t, t.name(), true));
        out.push_str(";\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(dialect: Dialect) -> std::path::PathBuf {
        let folder = match dialect {
            Dialect::Sqlite => "sqlite",
            Dialect::Postgres => "postgres",
        };
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../migrations")
            .join(folder)
            .join(MIGRATION_FILE)
    }

    #[test]
    fn migration_files_match_the_schema_in_code() {
        for dialect in [Dialect::Sqlite, Dialect::Postgres] {
            let expected = migration(dialect);
            let path = file(dialect);
            if std::env::var_os("CHORUS_WRITE_MIGRATIONS").is_some() {
                std::fs::write(&path, &expected).expect("write migration");
            }
            let actual = std::fs::read_to_string(&path).expect("read migration");
            assert_eq!(actual, expected, "{} is out of date", path.display());
        }
    }

    /// Released migrations are frozen: sqlx records each one's checksum, and a changed
    /// file would stop every existing database from starting.
    #[test]
    fn released_migrations_are_unchanged() {
        use sha2::{Digest, Sha256};
        let released = [
            (
                "sqlite/0002_read_models.sql",
                "bbc1d8470bfd05470a5b2f73e604c97d1aa25eeef48c4261a2829dd75ac648c3",
            ),
            (
                "postgres/0002_read_models.sql",
                "ae221265630a3175b9912ac0e50bbeec9d027485beda0b0f7eda33fbb96e6a30",
            ),
            (
                "sqlite/0003_read_models_v2.sql",
                "0199a8a7e2fed04b434b7056974bec1a1ea1da21e102f3deab94ca083357028c",
            ),
            (
                "postgres/0003_read_models_v2.sql",
                "23c60b03ffa0688a7c5e9141ed0671ce2704fa034a3f3610bcddb94104ad95ac",
            ),
            (
                "sqlite/0004_read_models_v3.sql",
                "f62525c7658900ad6cfdf43753709707e432e438e684c20a3249a2da4528d265",
            ),
            (
                "postgres/0004_read_models_v3.sql",
                "e836da091ab4ce006b2cfbb46885fdef4ac4f4769b5af57a414059e4acb587c5",
            ),
            (
                "sqlite/0005_read_models_v4.sql",
                "a44a2eb630f9d42b34bff3d3c949a0b1a15203b0f016421d15273f9cd697c46f",
            ),
            (
                "postgres/0005_read_models_v4.sql",
                "d6777f594d943304f7055b9dde18303c9d0709587fa7bb6c88f8349e02fa0d29",
            ),
        ];
        for (file, sha256) in released {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../migrations")
                .join(file);
            let bytes = std::fs::read(&path).expect("read released migration");
            assert_eq!(
                hex::encode(Sha256::digest(&bytes)),
                sha256,
                "{file} was edited after its release; put changes in a new migration"
            );
        }
    }

    #[test]
    fn table_names_round_trip() {
        for t in Table::ALL {
            assert_eq!(Table::from_name(t.name()), Some(t));
        }
        assert_eq!(Table::from_name("nope"), None);
    }
}
