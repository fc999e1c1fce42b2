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
];

const MEMBERS: &[Column] = &[
    col("guild_id", Int, "the guild"),
    col("user_id", Int, "the member"),
    col("joined_at", Int, "when they joined, Unix ms"),
    null("nick", Text, "guild nickname"),
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
}

impl Table {
    /// Every read-model table, in creation order.
    pub const ALL: [Table; 6] = [
        Table::Users,
        Table::Guilds,
        Table::Channels,
        Table::Members,
        Table::Invites,
        Table::Messages,
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
                "Guild channels, from ChannelCreated; last_message_id from MessageCreated."
            }
            Table::Members => "Guild members, from MemberJoined.",
            Table::Invites => "Invites, from InviteCreated; uses counts InviteUsed.",
            Table::Messages => {
                "Messages, from MessageCreated / MessageEdited / MessageDeleted. A deleted \
                 message keeps its row with deleted_at set; queries skip it."
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
        }
    }

    /// Whether SQLite stores the table as a b-tree on its primary key (`WITHOUT ROWID`):
    /// one tree instead of a rowid table plus a key index, for composite keys.
    pub const fn without_rowid(self) -> bool {
        matches!(self, Table::Members | Table::Messages)
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

fn checkpoints_table(dialect: Dialect) -> String {
    let int = sql_type(dialect, Int);
    let strict = match dialect {
        Dialect::Sqlite => " STRICT",
        Dialect::Postgres => "",
    };
    format!(
        "CREATE TABLE {CHECKPOINTS} (\n    name TEXT NOT NULL PRIMARY KEY, -- projection name (read_models, publisher)\n    position {int} NOT NULL -- last global log position applied\n){strict}"
    )
}

/// The text of the migration `0002_read_models.sql` for `dialect`.
pub fn migration(dialect: Dialect) -> String {
    let name = match dialect {
        Dialect::Sqlite => "SQLite",
        Dialect::Postgres => "PostgreSQL",
    };
    let mut out = format!(
        "-- Read models ({name} dialect), written only by the projections crate.\n\
         --\n\
         -- GENERATED from projections/src/schema.rs (a test keeps them equal): change the\n\
         -- schema there and add a new migration; never edit this file once released.\n\
         -- Every index is a PRIMARY KEY or UNIQUE constraint so that a rebuild can swap\n\
         -- tables by renaming them. Ids are snowflakes, times Unix milliseconds, booleans\n\
         -- 0 or 1.\n\n\
         -- Checkpoints: each projection's position, written in the same transaction as its\n\
         -- changes. Every batch first locks its row, which serializes runners of several\n\
         -- processes.\n"
    );
    out.push_str(&checkpoints_table(dialect));
    out.push_str(";\n");
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
            .join("0002_read_models.sql")
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

    #[test]
    fn table_names_round_trip() {
        for t in Table::ALL {
            assert_eq!(Table::from_name(t.name()), Some(t));
        }
        assert_eq!(Table::from_name("nope"), None);
    }
}
