-- The event log (PostgreSQL dialect): every event of every stream, in commit order.
--
-- Written only by the store crate's appender (store/src/postgres.rs). Every append
-- transaction first takes the transaction-level advisory lock
-- `pg_advisory_xact_lock(7163097744720225654)` (the ASCII bytes of "chorusev"; the
-- constant is APPEND_LOCK in postgres.rs), then assigns positions as
-- max(position) + 1. Appends from every process are therefore serialized, and a commit
-- becomes visible before the lock passes to the next writer: a reader that sees position
-- N already sees every position below N. A bigserial would not give that guarantee
-- (sequence values commit out of order and leave gaps on rollback), so there is none.
-- Events are never updated or deleted.

CREATE TABLE events (
    -- Global position: 1-based and gap-free, strictly increasing in commit order.
    position    bigint      NOT NULL PRIMARY KEY CHECK (position >= 1),
    -- The stream (one aggregate): `guild-{id}`, `channel-{id}`, ...
    stream_id   text        NOT NULL CHECK (length(stream_id) BETWEEN 1 AND 200),
    -- 1-based revision within the stream; a stream's current revision is its length.
    revision    bigint      NOT NULL CHECK (revision >= 1),
    -- Idempotency key chosen by the writer: the same event id is never stored twice.
    event_id    uuid        NOT NULL UNIQUE,
    event_type  text        NOT NULL,
    -- Schema version of `data` for this event type (old versions are upcast on read).
    version     integer     NOT NULL CHECK (version BETWEEN 0 AND 65535),
    -- The event payload and its metadata (actor, occurred_at, correlation id, reason).
    data        jsonb       NOT NULL,
    metadata    jsonb       NOT NULL,
    -- When the event was committed. Informational only.
    recorded_at timestamptz NOT NULL DEFAULT now(),
    -- The concurrency guard: two writers can never both append revision N to a stream.
    -- Its index also serves reads of one stream and the appender's revision look-ups.
    UNIQUE (stream_id, revision)
);
