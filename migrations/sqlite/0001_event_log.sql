-- The event log (SQLite dialect): every event of every stream, in commit order.
--
-- Written only by the store crate's appender (store/src/sqlite.rs), one write transaction
-- (BEGIN IMMEDIATE) per group commit. Events are never updated or deleted.

CREATE TABLE events (
    -- Global position: 1-based and gap-free. The appender assigns max(position) + 1 while
    -- it holds SQLite's write lock, so positions follow commit order. INTEGER PRIMARY KEY
    -- makes it the rowid: reading the log in order is a walk of the table itself.
    position    INTEGER NOT NULL PRIMARY KEY CHECK (position >= 1),
    -- The stream (one aggregate): `guild-{id}`, `channel-{id}`, ...
    stream_id   TEXT    NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    -- 1-based revision within the stream; a stream's current revision is its length.
    revision    INTEGER NOT NULL CHECK (revision >= 1),
    -- Idempotency key chosen by the writer (hyphenated UUID text, readable in the CLI):
    -- appending the same event id again never duplicates the event.
    event_id    TEXT    NOT NULL UNIQUE,
    event_type  TEXT    NOT NULL,
    -- Schema version of `data` for this event type (old versions are upcast on read).
    version     INTEGER NOT NULL CHECK (version BETWEEN 0 AND 65535),
    -- The event payload and its metadata (actor, occurred_at, correlation id, reason),
    -- JSON text.
    data        TEXT    NOT NULL,
    metadata    TEXT    NOT NULL,
    -- When the event was committed (UTC, RFC 3339 with milliseconds). Informational only.
    recorded_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    -- The concurrency guard: two writers can never both append revision N to a stream.
    -- Its index also serves reads of one stream, forwards and backwards.
    UNIQUE (stream_id, revision)
) STRICT;
