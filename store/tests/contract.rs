//! The contract every `EventStore` backend keeps: one set of tests, run against the
//! in-memory, SQLite and PostgreSQL backends (`memory::*`, `sqlite::*`, `postgres::*`),
//! plus tests of what only a shared database can do: several stores (processes) appending
//! to one SQLite file or one PostgreSQL database.
//!
//! PostgreSQL: `postgres://postgres@127.0.0.1:5432/postgres` unless
//! `CHORUS_TEST_DATABASE_URL` says otherwise. Every test gets a fresh database
//! (`chorus_test_<uuid>`), dropped at the end. An unreachable server fails the tests.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use store::memory::MemoryStore;
use store::{
    subscribe_all, Actor, AppendResult, Direction, DynStore, ExpectedRevision, Metadata, NewEvent,
    PostgresStore, RecordedEvent, SqliteStore, StoreError, StreamAppend,
};
use time::OffsetDateTime;
use tokio::time::timeout;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Backends

/// Creates a fresh, empty store for one test and cleans up after it.
trait Backend: Sized {
    async fn create() -> Self;
    fn store(&self) -> DynStore;
    async fn destroy(self) {}
}

struct MemoryBackend(DynStore);

impl Backend for MemoryBackend {
    async fn create() -> Self {
        MemoryBackend(Arc::new(MemoryStore::new()))
    }
    fn store(&self) -> DynStore {
        self.0.clone()
    }
}

struct SqliteBackend {
    dir: tempfile::TempDir,
    store: DynStore,
}

impl SqliteBackend {
    fn path(&self) -> String {
        self.dir.path().join("events.db").display().to_string()
    }

    /// Another store on the same file, with its own pool and appender, as another process
    /// (the CLI) would have.
    async fn open_another(&self) -> DynStore {
        Arc::new(SqliteStore::open(&self.path()).await.expect("open sqlite"))
    }
}

impl Backend for SqliteBackend {
    async fn create() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("events.db");
        let store = SqliteStore::open(&path.display().to_string())
            .await
            .expect("open sqlite");
        SqliteBackend {
            dir,
            store: Arc::new(store),
        }
    }
    fn store(&self) -> DynStore {
        self.store.clone()
    }
}

struct PostgresBackend {
    admin: PgConnectOptions,
    database: String,
    pool: sqlx::PgPool,
    store: Option<DynStore>,
}

fn postgres_base_url() -> String {
    std::env::var("CHORUS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

impl PostgresBackend {
    fn options(&self) -> PgConnectOptions {
        self.admin.clone().database(&self.database)
    }

    /// Another store on the same database, with its own pool, appender and LISTEN
    /// connection: what another process would have.
    async fn open_another(&self) -> DynStore {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect_with(self.options())
            .await
            .expect("connect to the test database");
        Arc::new(PostgresStore::from_pool(pool).await.expect("open postgres"))
    }
}

impl Backend for PostgresBackend {
    async fn create() -> Self {
        let url = postgres_base_url();
        let admin = PgConnectOptions::from_str(&url)
            .unwrap_or_else(|e| panic!("CHORUS_TEST_DATABASE_URL {url:?} is not valid: {e}"));
        let mut conn = admin.connect().await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {url} is unreachable: {e}. The contract tests need it: start it \
                 (pg_ctlcluster --skip-systemctl-redirect 15 main start) or point \
                 CHORUS_TEST_DATABASE_URL at a server"
            )
        });
        let database = format!("chorus_test_{}", Uuid::new_v4().simple());
        conn.execute(format!("CREATE DATABASE {database}").as_str())
            .await
            .unwrap_or_else(|e| panic!("create database {database}: {e}"));
        conn.close().await.ok();
        let pool = PgPoolOptions::new()
            .max_connections(12)
            .connect_with(admin.clone().database(&database))
            .await
            .expect("connect to the test database");
        let store = PostgresStore::from_pool(pool.clone())
            .await
            .expect("open postgres");
        PostgresBackend {
            admin,
            database,
            pool,
            store: Some(Arc::new(store)),
        }
    }
    fn store(&self) -> DynStore {
        self.store.clone().expect("store")
    }
    async fn destroy(mut self) {
        self.store = None;
        let _ = timeout(Duration::from_secs(5), self.pool.close()).await;
        if let Ok(mut conn) = self.admin.connect().await {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.database).as_str())
                .await;
        }
    }
}

/// Runs one contract test against a fresh store of backend `B`, cleaning up even when the
/// test fails.
async fn run<B, F, Fut>(test: F)
where
    B: Backend,
    F: FnOnce(DynStore) -> Fut,
    Fut: Future<Output = ()>,
{
    let backend = B::create().await;
    let outcome = AssertUnwindSafe(test(backend.store())).catch_unwind().await;
    backend.destroy().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! contract {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run::<super::MemoryBackend, _, _>(super::$test).await
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run::<super::SqliteBackend, _, _>(super::$test).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::run::<super::PostgresBackend, _, _>(super::$test).await
                }
            )*
        }
    };
}

contract!(
    appended_events_read_back_forwards_and_backwards,
    stored_events_keep_every_field_exactly,
    a_wrong_expected_revision_is_rejected_and_writes_nothing,
    no_stream_on_an_existing_stream_conflicts,
    retrying_an_append_with_the_same_event_ids_returns_the_first_result,
    retrying_a_multi_stream_append_returns_the_first_result_and_duplicates_nothing,
    reusing_event_ids_for_a_different_append_is_rejected,
    a_multi_stream_append_where_one_part_conflicts_writes_nothing_at_all,
    invalid_appends_are_rejected_before_anything_is_written,
    an_empty_append_reports_the_current_revision,
    of_many_concurrent_appends_expecting_the_same_revision_exactly_one_wins,
    concurrent_writers_are_seen_by_a_live_subscriber_exactly_once_in_order,
    a_subscriber_that_restarts_from_its_checkpoint_misses_nothing_and_repeats_nothing,
    read_all_pages_through_the_whole_log,
    several_streams_read_in_one_call_match_reading_each,
);

// ---------------------------------------------------------------------------------------
// Helpers

fn event(n: u64) -> NewEvent {
    NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "TestHappened".into(),
        version: 1,
        data: json!({ "n": n }),
        metadata: Metadata::system("contract-test"),
    }
}

fn events(count: u64) -> Vec<NewEvent> {
    (1..=count).map(event).collect()
}

fn part(stream: &str, expected: ExpectedRevision, events: Vec<NewEvent>) -> StreamAppend {
    StreamAppend {
        stream_id: stream.into(),
        expected,
        events,
    }
}

async fn read_stream(store: &DynStore, stream: &str) -> Vec<RecordedEvent> {
    store
        .read_stream(stream, 0, Direction::Forwards, usize::MAX)
        .await
        .expect("read stream")
}

async fn read_everything(store: &DynStore) -> Vec<RecordedEvent> {
    store.read_all(0, usize::MAX).await.expect("read all")
}

fn revisions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.revision).collect()
}

fn positions(events: &[RecordedEvent]) -> Vec<u64> {
    events.iter().map(|e| e.position).collect()
}

fn assert_is_conflict(result: Result<impl std::fmt::Debug, StoreError>, actual_revision: u64) {
    match result {
        Err(StoreError::WrongExpectedRevision { actual, .. }) => {
            assert_eq!(actual, actual_revision, "reported current revision")
        }
        other => panic!("expected a wrong-expected-revision conflict, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------
// The contract

async fn several_streams_read_in_one_call_match_reading_each(store: DynStore) {
    store
        .append("m-a", ExpectedRevision::NoStream, events(5))
        .await
        .unwrap();
    store
        .append("m-b", ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    store
        .append("m-a", ExpectedRevision::Exact(5), events(1))
        .await
        .unwrap();

    // Given order is kept, each stream from its own revision, capped per stream.
    let got = store
        .read_streams_forwards(&[("m-b", 1), ("m-a", 3), ("m-none", 1)], 3)
        .await
        .unwrap();
    let mut expected = store
        .read_stream("m-b", 1, Direction::Forwards, 3)
        .await
        .unwrap();
    expected.extend(
        store
            .read_stream("m-a", 3, Direction::Forwards, 3)
            .await
            .unwrap(),
    );
    assert_eq!(got, expected);
    assert_eq!(
        got.iter()
            .map(|e| (e.stream_id.as_str(), e.revision))
            .collect::<Vec<_>>(),
        vec![("m-b", 1), ("m-b", 2), ("m-a", 3), ("m-a", 4), ("m-a", 5)]
    );

    // Streams that are caught up read nothing; no streams is no events.
    let got = store
        .read_streams_forwards(&[("m-a", 7), ("m-b", 3)], 100)
        .await
        .unwrap();
    assert!(got.is_empty(), "{got:?}");
    assert!(store
        .read_streams_forwards(&[], 100)
        .await
        .unwrap()
        .is_empty());
}

async fn appended_events_read_back_forwards_and_backwards(store: DynStore) {
    let first = events(3);
    let r = store
        .append("s-a", ExpectedRevision::NoStream, first.clone())
        .await
        .unwrap();
    assert_eq!(
        r,
        AppendResult {
            revision: 3,
            position: 3
        }
    );
    let r = store
        .append("s-b", ExpectedRevision::Any, events(2))
        .await
        .unwrap();
    assert_eq!(
        r,
        AppendResult {
            revision: 2,
            position: 5
        }
    );
    let second = events(2);
    let r = store
        .append("s-a", ExpectedRevision::Exact(3), second.clone())
        .await
        .unwrap();
    assert_eq!(
        r,
        AppendResult {
            revision: 5,
            position: 7
        }
    );

    let all = read_stream(&store, "s-a").await;
    assert_eq!(revisions(&all), [1, 2, 3, 4, 5]);
    assert_eq!(positions(&all), [1, 2, 3, 6, 7]);
    let ids: Vec<Uuid> = all.iter().map(|e| e.event_id).collect();
    let sent: Vec<Uuid> = first.iter().chain(&second).map(|e| e.event_id).collect();
    assert_eq!(ids, sent);
    assert!(all.iter().all(|e| e.stream_id == "s-a"));

    let middle = store
        .read_stream("s-a", 2, Direction::Forwards, 2)
        .await
        .unwrap();
    assert_eq!(revisions(&middle), [2, 3]);
    let newest = store
        .read_stream("s-a", u64::MAX, Direction::Backwards, 2)
        .await
        .unwrap();
    assert_eq!(revisions(&newest), [5, 4]);
    let oldest = store
        .read_stream("s-a", 3, Direction::Backwards, 10)
        .await
        .unwrap();
    assert_eq!(revisions(&oldest), [3, 2, 1]);
    let past_the_end = store
        .read_stream("s-a", 6, Direction::Forwards, 10)
        .await
        .unwrap();
    assert!(past_the_end.is_empty());
    let none = store
        .read_stream("s-a", 1, Direction::Forwards, 0)
        .await
        .unwrap();
    assert!(none.is_empty());

    assert_eq!(store.stream_revision("s-a").await.unwrap(), 5);
    assert_eq!(store.stream_revision("s-b").await.unwrap(), 2);
    assert_eq!(store.stream_revision("nobody").await.unwrap(), 0);
    assert!(read_stream(&store, "nobody").await.is_empty());
    assert_eq!(store.head().await.unwrap(), 7);
    assert_eq!(
        positions(&read_everything(&store).await),
        [1, 2, 3, 4, 5, 6, 7]
    );
}

async fn stored_events_keep_every_field_exactly(store: DynStore) {
    let sent = NewEvent {
        event_id: Uuid::new_v4(),
        event_type: "MessageCreated".into(),
        version: 65535,
        data: json!({
            "content": "héllo 👋 \"quoted\" \\ back\nslash",
            "big": u64::MAX,
            "negative": i64::MIN,
            "float": 1.5,
            "nested": { "list": [1, null, true, "x"], "empty": {} },
        }),
        metadata: Metadata {
            actor: Actor::User(81_234_567_890_123_456),
            occurred_at: OffsetDateTime::from_unix_timestamp_nanos(1_700_000_000_123_456_789)
                .unwrap(),
            correlation_id: "req-42".into(),
            reason: Some("spam, obviously".into()),
        },
    };
    store
        .append("channel-1", ExpectedRevision::NoStream, vec![sent.clone()])
        .await
        .unwrap();
    let expected = RecordedEvent {
        stream_id: "channel-1".into(),
        revision: 1,
        position: 1,
        event_id: sent.event_id,
        event_type: sent.event_type,
        version: sent.version,
        data: sent.data,
        metadata: sent.metadata,
    };
    assert_eq!(
        read_stream(&store, "channel-1").await,
        std::slice::from_ref(&expected)
    );
    assert_eq!(read_everything(&store).await, [expected]);
}

async fn a_wrong_expected_revision_is_rejected_and_writes_nothing(store: DynStore) {
    store
        .append("s", ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let before = read_stream(&store, "s").await;

    let rejected = store
        .append("s", ExpectedRevision::Exact(1), events(3))
        .await;
    assert!(rejected.as_ref().is_err_and(StoreError::is_conflict));
    assert_is_conflict(rejected, 2);
    assert_is_conflict(
        store
            .append("s", ExpectedRevision::Exact(7), events(1))
            .await,
        2,
    );
    assert_is_conflict(
        store
            .append("empty", ExpectedRevision::Exact(1), events(1))
            .await,
        0,
    );

    assert_eq!(store.head().await.unwrap(), 2);
    assert_eq!(store.stream_revision("s").await.unwrap(), 2);
    assert_eq!(read_stream(&store, "s").await, before);
    assert!(read_stream(&store, "empty").await.is_empty());
    assert_eq!(read_everything(&store).await.len(), 2);
}

async fn no_stream_on_an_existing_stream_conflicts(store: DynStore) {
    store
        .append("s", ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    assert_is_conflict(
        store
            .append("s", ExpectedRevision::NoStream, events(1))
            .await,
        1,
    );
    assert_eq!(store.head().await.unwrap(), 1);
    assert_eq!(store.stream_revision("s").await.unwrap(), 1);
}

async fn retrying_an_append_with_the_same_event_ids_returns_the_first_result(store: DynStore) {
    let batch = events(3);
    let first = store
        .append("s", ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    store
        .append("other", ExpectedRevision::Any, events(2))
        .await
        .unwrap();
    // The expectation no longer holds, but a retry is recognised by its event ids.
    let retry = store
        .append("s", ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    assert_eq!(retry, first);
    let retry_any = store
        .append("s", ExpectedRevision::Any, batch.clone())
        .await
        .unwrap();
    assert_eq!(retry_any, first);

    assert_eq!(store.head().await.unwrap(), 5);
    let stored = read_stream(&store, "s").await;
    assert_eq!(revisions(&stored), [1, 2, 3]);
    let ids: Vec<Uuid> = stored.iter().map(|e| e.event_id).collect();
    let sent: Vec<Uuid> = batch.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, sent);
}

async fn retrying_a_multi_stream_append_returns_the_first_result_and_duplicates_nothing(
    store: DynStore,
) {
    store
        .append("b", ExpectedRevision::Any, events(1))
        .await
        .unwrap();
    let atomic = vec![
        part("a", ExpectedRevision::NoStream, events(2)),
        part("b", ExpectedRevision::Exact(1), events(3)),
        part("c", ExpectedRevision::Any, events(1)),
    ];
    let first = store.append_many(atomic.clone()).await.unwrap();
    assert_eq!(
        first,
        [
            AppendResult {
                revision: 2,
                position: 3
            },
            AppendResult {
                revision: 4,
                position: 6
            },
            AppendResult {
                revision: 1,
                position: 7
            },
        ]
    );
    let retry = store.append_many(atomic.clone()).await.unwrap();
    assert_eq!(retry, first);

    // Concurrent retries of the same append (which may share one group commit) too.
    let retries = futures::future::join_all((0..8).map(|_| {
        let store = store.clone();
        let atomic = atomic.clone();
        async move { store.append_many(atomic).await }
    }))
    .await;
    for r in retries {
        assert_eq!(r.unwrap(), first);
    }

    assert_eq!(store.head().await.unwrap(), 7);
    assert_eq!(revisions(&read_stream(&store, "a").await), [1, 2]);
    assert_eq!(revisions(&read_stream(&store, "b").await), [1, 2, 3, 4]);
    assert_eq!(revisions(&read_stream(&store, "c").await), [1]);
}

async fn reusing_event_ids_for_a_different_append_is_rejected(store: DynStore) {
    let batch = events(2);
    store
        .append("s", ExpectedRevision::Any, batch.clone())
        .await
        .unwrap();
    // The same ids on another stream.
    let moved = store
        .append("t", ExpectedRevision::Any, batch.clone())
        .await;
    assert!(
        matches!(moved, Err(StoreError::DuplicateEventId(_))),
        "{moved:?}"
    );
    // Only some of the ids known.
    let mut partly = batch.clone();
    partly.push(event(3));
    let partial = store.append("s", ExpectedRevision::Any, partly).await;
    assert!(
        matches!(partial, Err(StoreError::DuplicateEventId(_))),
        "{partial:?}"
    );
    // A known id inside a multi-stream append with a new part.
    let mixed = store
        .append_many(vec![
            part("s", ExpectedRevision::Any, batch.clone()),
            part("u", ExpectedRevision::Any, events(1)),
        ])
        .await;
    assert!(
        matches!(mixed, Err(StoreError::DuplicateEventId(_))),
        "{mixed:?}"
    );

    assert_eq!(store.head().await.unwrap(), 2);
    assert!(read_stream(&store, "t").await.is_empty());
    assert!(read_stream(&store, "u").await.is_empty());
}

async fn a_multi_stream_append_where_one_part_conflicts_writes_nothing_at_all(store: DynStore) {
    store
        .append("taken", ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let result = store
        .append_many(vec![
            part("fresh", ExpectedRevision::NoStream, events(2)),
            part("also-fresh", ExpectedRevision::Any, events(2)),
            part("taken", ExpectedRevision::NoStream, events(1)),
        ])
        .await;
    assert_is_conflict(result, 1);
    assert_eq!(store.head().await.unwrap(), 1);
    assert_eq!(store.stream_revision("fresh").await.unwrap(), 0);
    assert_eq!(store.stream_revision("also-fresh").await.unwrap(), 0);
    assert_eq!(store.stream_revision("taken").await.unwrap(), 1);
    assert_eq!(read_everything(&store).await.len(), 1);

    // Nothing of the failed append lingers: the same streams can be appended afresh.
    let ok = store
        .append_many(vec![
            part("fresh", ExpectedRevision::NoStream, events(2)),
            part("taken", ExpectedRevision::Exact(1), events(1)),
        ])
        .await
        .unwrap();
    assert_eq!(
        ok,
        [
            AppendResult {
                revision: 2,
                position: 3
            },
            AppendResult {
                revision: 2,
                position: 4
            }
        ]
    );
}

async fn invalid_appends_are_rejected_before_anything_is_written(store: DynStore) {
    let twice = store
        .append_many(vec![
            part("s", ExpectedRevision::Any, events(1)),
            part("s", ExpectedRevision::Any, events(1)),
        ])
        .await;
    assert!(
        matches!(twice, Err(StoreError::InvalidAppend(_))),
        "{twice:?}"
    );
    let e = event(1);
    let same_id = store
        .append("s", ExpectedRevision::Any, vec![e.clone(), e])
        .await;
    assert!(
        matches!(same_id, Err(StoreError::InvalidAppend(_))),
        "{same_id:?}"
    );
    let nameless = store.append("", ExpectedRevision::Any, events(1)).await;
    assert!(
        matches!(nameless, Err(StoreError::InvalidAppend(_))),
        "{nameless:?}"
    );
    let long = store
        .append(&"x".repeat(201), ExpectedRevision::Any, events(1))
        .await;
    assert!(
        matches!(long, Err(StoreError::InvalidAppend(_))),
        "{long:?}"
    );
    assert_eq!(store.head().await.unwrap(), 0);
}

async fn an_empty_append_reports_the_current_revision(store: DynStore) {
    store
        .append("s", ExpectedRevision::Any, events(2))
        .await
        .unwrap();
    store
        .append("t", ExpectedRevision::Any, events(1))
        .await
        .unwrap();
    let r = store
        .append("s", ExpectedRevision::Exact(2), Vec::new())
        .await
        .unwrap();
    assert_eq!(
        r,
        AppendResult {
            revision: 2,
            position: 3
        }
    );
    assert_is_conflict(
        store
            .append("s", ExpectedRevision::Exact(1), Vec::new())
            .await,
        2,
    );
    assert_eq!(store.head().await.unwrap(), 3);
}

async fn of_many_concurrent_appends_expecting_the_same_revision_exactly_one_wins(store: DynStore) {
    store
        .append("contested", ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let attempts = futures::future::join_all((0..32).map(|i| {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .append("contested", ExpectedRevision::Exact(1), vec![event(i)])
                .await
        })
    }))
    .await;
    let mut wins = 0;
    for attempt in attempts {
        match attempt.expect("task") {
            Ok(r) => {
                wins += 1;
                assert_eq!(r.revision, 2);
            }
            Err(e) => assert!(e.is_conflict(), "unexpected error {e}"),
        }
    }
    assert_eq!(wins, 1);
    assert_eq!(revisions(&read_stream(&store, "contested").await), [1, 2]);
    assert_eq!(store.head().await.unwrap(), 2);
}

/// Eight writers append 500 events each, one event per append, into four shared streams
/// chosen round-robin; half append with `Any`, half with `Exact` and retry on conflict.
/// A subscriber that runs throughout must see every committed event exactly once, at
/// gap-free increasing positions, and every stream's revisions 1..n in order.
async fn concurrent_writers_are_seen_by_a_live_subscriber_exactly_once_in_order(store: DynStore) {
    const WRITERS: usize = 8;
    const PER_WRITER: usize = 500;
    const STREAMS: usize = 4;
    const TOTAL: usize = WRITERS * PER_WRITER;

    let subscriber = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut sub = subscribe_all(store, 0);
            let mut seen: Vec<RecordedEvent> = Vec::with_capacity(TOTAL);
            while seen.len() < TOTAL {
                let batch = timeout(Duration::from_secs(60), sub.next_batch())
                    .await
                    .unwrap_or_else(|_| panic!("subscriber stalled after {} events", seen.len()))
                    .expect("subscription");
                seen.extend(batch);
            }
            seen
        })
    };

    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut written = Vec::with_capacity(PER_WRITER);
                for i in 0..PER_WRITER {
                    let stream = format!("shared-{}", (w + i) % STREAMS);
                    let mut e = event(i as u64);
                    e.data = json!({ "writer": w, "i": i });
                    written.push(e.event_id);
                    if w % 2 == 0 {
                        store
                            .append(&stream, ExpectedRevision::Any, vec![e])
                            .await
                            .expect("append with Any");
                        continue;
                    }
                    loop {
                        let revision = store.stream_revision(&stream).await.expect("revision");
                        match store
                            .append(&stream, ExpectedRevision::Exact(revision), vec![e.clone()])
                            .await
                        {
                            Ok(r) => {
                                assert!(r.revision > revision);
                                break;
                            }
                            Err(err) if err.is_conflict() => continue,
                            Err(err) => panic!("append with Exact: {err}"),
                        }
                    }
                }
                written
            })
        })
        .collect();

    let mut written: HashMap<Uuid, usize> = HashMap::new();
    let mut by_writer = Vec::new();
    for (w, writer) in writers.into_iter().enumerate() {
        let ids = timeout(Duration::from_secs(120), writer)
            .await
            .expect("writer finished in time")
            .expect("writer task");
        for id in &ids {
            written.insert(*id, w);
        }
        by_writer.push(ids);
    }
    let seen = timeout(Duration::from_secs(60), subscriber)
        .await
        .expect("subscriber finished in time")
        .expect("subscriber task");

    assert_eq!(written.len(), TOTAL);
    assert_eq!(seen.len(), TOTAL, "subscriber saw more than was written");
    let expected_positions: Vec<u64> = (1..=TOTAL as u64).collect();
    assert_eq!(
        positions(&seen),
        expected_positions,
        "positions skip or repeat"
    );
    let mut ids = HashSet::new();
    for e in &seen {
        assert!(ids.insert(e.event_id), "event {} seen twice", e.event_id);
        assert!(
            written.contains_key(&e.event_id),
            "unknown event {}",
            e.event_id
        );
    }
    let mut per_stream: HashMap<&str, Vec<u64>> = HashMap::new();
    for e in &seen {
        per_stream.entry(&e.stream_id).or_default().push(e.revision);
    }
    assert_eq!(per_stream.len(), STREAMS);
    for (stream, revs) in &per_stream {
        let expected: Vec<u64> = (1..=revs.len() as u64).collect();
        assert_eq!(revs, &expected, "revisions of {stream}");
        assert_eq!(
            store.stream_revision(stream).await.unwrap(),
            revs.len() as u64
        );
    }
    // Each writer's events appear in the order it appended them.
    let position_of: HashMap<Uuid, u64> = seen.iter().map(|e| (e.event_id, e.position)).collect();
    for ids in &by_writer {
        let ps: Vec<u64> = ids.iter().map(|id| position_of[id]).collect();
        assert!(ps.windows(2).all(|w| w[0] < w[1]));
    }
    // Nothing beyond what the subscriber saw.
    assert_eq!(store.head().await.unwrap(), TOTAL as u64);
    assert!(store.read_all(TOTAL as u64, 10).await.unwrap().is_empty());
}

async fn a_subscriber_that_restarts_from_its_checkpoint_misses_nothing_and_repeats_nothing(
    store: DynStore,
) {
    let mut sent = Vec::new();
    for i in 0..10u64 {
        let e = event(i);
        sent.push(e.event_id);
        store
            .append(&format!("s-{}", i % 3), ExpectedRevision::Any, vec![e])
            .await
            .unwrap();
    }
    let mut received = Vec::new();
    let mut sub = subscribe_all(store.clone(), 0);
    for _ in 0..4 {
        let e = timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("event in time")
            .unwrap();
        received.push(e);
    }
    let checkpoint = sub.position();
    assert_eq!(checkpoint, 4);
    drop(sub);

    // More events arrive while the subscriber is down, and while it catches up.
    let mut more = Vec::new();
    for i in 10..15u64 {
        let e = event(i);
        more.push(e.event_id);
        store
            .append(&format!("s-{}", i % 3), ExpectedRevision::Any, vec![e])
            .await
            .unwrap();
    }
    sent.extend(more);
    let late = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 15..20u64 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                let e = event(i);
                ids.push(e.event_id);
                store
                    .append(&format!("s-{}", i % 3), ExpectedRevision::Any, vec![e])
                    .await
                    .unwrap();
            }
            ids
        })
    };

    let mut sub = subscribe_all(store.clone(), checkpoint);
    while received.len() < 20 {
        let e = timeout(Duration::from_secs(10), sub.next())
            .await
            .expect("event in time")
            .unwrap();
        received.push(e);
    }
    sent.extend(late.await.unwrap());
    assert_eq!(sub.position(), 20);
    let ids: Vec<Uuid> = received.iter().map(|e| e.event_id).collect();
    assert_eq!(ids, sent);
    assert_eq!(positions(&received), (1..=20).collect::<Vec<u64>>());
    // And nothing more is pending.
    assert!(timeout(Duration::from_millis(300), sub.next())
        .await
        .is_err());
}

async fn read_all_pages_through_the_whole_log(store: DynStore) {
    for i in 0..25u64 {
        store
            .append(
                &format!("s-{}", i % 4),
                ExpectedRevision::Any,
                vec![event(i)],
            )
            .await
            .unwrap();
    }
    let mut after = 0;
    let mut pages = Vec::new();
    loop {
        let page = store.read_all(after, 7).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        after = page.last().unwrap().position;
        pages.push(page);
    }
    assert_eq!(pages.iter().map(Vec::len).collect::<Vec<_>>(), [7, 7, 7, 4]);
    let all: Vec<RecordedEvent> = pages.into_iter().flatten().collect();
    assert_eq!(positions(&all), (1..=25).collect::<Vec<u64>>());
    assert_eq!(all, read_everything(&store).await);
    assert_eq!(
        positions(&store.read_all(10, 3).await.unwrap()),
        [11, 12, 13]
    );
    assert!(store.read_all(25, 10).await.unwrap().is_empty());
    assert!(store.read_all(u64::MAX, 10).await.unwrap().is_empty());
    assert!(store.read_all(0, 0).await.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------
// Several processes on one database

/// `writers` tasks on each of `stores` append `per_writer` appends (mixing single events
/// and small multi-stream batches) while `reader` polls `read_all`. The reader must never
/// skip a position (it sees N + 1 right after N, never a gap that fills in later), and in
/// the end sees every event exactly once.
async fn appends_from_several_stores_never_let_a_reader_skip(
    stores: Vec<DynStore>,
    reader: DynStore,
    writers: usize,
    per_writer: usize,
) {
    let mut tasks = Vec::new();
    let mut expected_events = 0;
    for (s, store) in stores.iter().enumerate() {
        for w in 0..writers {
            let store = store.clone();
            expected_events += per_writer + per_writer / 5 * 2;
            tasks.push(tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..per_writer {
                    let stream = format!("p{s}-w{w}-{}", i % 3);
                    if i % 5 == 4 {
                        // An atomic append to three streams: three events at once.
                        let parts: Vec<StreamAppend> = (0..3)
                            .map(|k| {
                                part(
                                    &format!("shared-{}", (i + k) % 7),
                                    ExpectedRevision::Any,
                                    vec![event(i as u64)],
                                )
                            })
                            .collect();
                        ids.extend(parts.iter().map(|p| p.events[0].event_id));
                        store.append_many(parts).await.expect("atomic append");
                    } else {
                        let e = event(i as u64);
                        ids.push(e.event_id);
                        store
                            .append(&stream, ExpectedRevision::Any, vec![e])
                            .await
                            .expect("append");
                    }
                }
                ids
            }));
        }
    }

    let reading = tokio::spawn(async move {
        let mut last = 0u64;
        let mut seen = Vec::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while seen.len() < expected_events {
            assert!(
                tokio::time::Instant::now() < deadline,
                "reader stalled at position {last}"
            );
            let page = reader.read_all(last, 1000).await.expect("read_all");
            if page.is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for e in page {
                assert_eq!(
                    e.position,
                    last + 1,
                    "the reader passed position {last} and then saw {}",
                    e.position
                );
                last = e.position;
                seen.push(e.event_id);
            }
        }
        seen
    });

    let mut written = HashSet::new();
    for task in tasks {
        for id in task.await.expect("writer") {
            written.insert(id);
        }
    }
    let seen = reading.await.expect("reader");
    assert_eq!(written.len(), expected_events);
    assert_eq!(seen.len(), expected_events);
    assert_eq!(seen.into_iter().collect::<HashSet<_>>(), written);
    for store in &stores {
        assert_eq!(store.head().await.unwrap(), expected_events as u64);
    }
}

mod postgres_processes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_appending_concurrently_never_let_a_reader_skip_a_position() {
        let backend = PostgresBackend::create().await;
        let a = backend.store();
        let b = backend.open_another().await;
        let reader = backend.open_another().await;
        let outcome = AssertUnwindSafe(appends_from_several_stores_never_let_a_reader_skip(
            vec![a, b],
            reader,
            4,
            250,
        ))
        .catch_unwind()
        .await;
        backend.destroy().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_hears_of_another_stores_commits_at_once() {
        let backend = PostgresBackend::create().await;
        let a = backend.store();
        let b = backend.open_another().await;
        let outcome = AssertUnwindSafe(async {
            let mut head = a.watch_head();
            assert_eq!(*head.borrow_and_update(), 0);
            b.append("s", ExpectedRevision::Any, events(3))
                .await
                .unwrap();
            // The store has no poll of its own: only the notification can wake it.
            timeout(Duration::from_secs(2), head.wait_for(|&p| p == 3))
                .await
                .expect("notified of the other store's commit")
                .unwrap();
            // And a live subscriber on `a` receives `b`'s events.
            let mut sub = subscribe_all(a.clone(), 3);
            b.append("s", ExpectedRevision::Exact(3), events(1))
                .await
                .unwrap();
            let e = timeout(Duration::from_secs(2), sub.next())
                .await
                .expect("live event")
                .unwrap();
            assert_eq!((e.position, e.revision), (4, 4));
        })
        .catch_unwind()
        .await;
        backend.destroy().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
    /// Another process commits and its notification has not reached this store yet (here:
    /// rows written behind the store's back, with no notification at all). The store's
    /// one-statement path guesses positions and revisions that are taken; the guess must
    /// be rejected whole and the batch decided again on the real log, with the outcome an
    /// up-to-date store would give, and positions gap-free.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_that_has_not_heard_of_another_stores_commits_appends_correctly() {
        let backend = PostgresBackend::create().await;
        let outcome = AssertUnwindSafe(async {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .connect_with(backend.options())
                .await
                .unwrap();
            let a = PostgresStore::from_pool(pool.clone()).await.unwrap();
            let s: DynStore = Arc::new(a.clone());
            // Written behind `a`'s back: position, stream, revision.
            let sneak = |position: i64, stream: &'static str, revision: i64| {
                let pool = pool.clone();
                async move {
                    let metadata = serde_json::to_string(&Metadata::system("elsewhere")).unwrap();
                    sqlx::query(
                        "INSERT INTO events (position, stream_id, revision, event_id, \
                         event_type, version, data, metadata) \
                         VALUES ($1, $2, $3, $4, 'TestHappened', 1, '{}', $5::jsonb)",
                    )
                    .bind(position)
                    .bind(stream)
                    .bind(revision)
                    .bind(Uuid::new_v4())
                    .bind(metadata)
                    .execute(&pool)
                    .await
                    .unwrap();
                }
            };
            let r = |revision, position| AppendResult { revision, position };

            assert_eq!(
                s.append("s", ExpectedRevision::NoStream, events(1))
                    .await
                    .unwrap(),
                r(1, 1)
            );
            assert_eq!(
                s.append("s", ExpectedRevision::Exact(1), events(1))
                    .await
                    .unwrap(),
                r(2, 2)
            );
            assert_eq!(
                a.group_commit_stats().one_statement,
                1,
                "the second append was decided on what the store knew"
            );

            // A stale expected revision is still a conflict, not a failure.
            sneak(3, "s", 3).await;
            assert_is_conflict(
                s.append("s", ExpectedRevision::Exact(2), events(1)).await,
                3,
            );
            // Any: the guessed revision and position are taken; the real ones are used.
            sneak(4, "s", 4).await;
            assert_eq!(
                s.append("s", ExpectedRevision::Any, events(1))
                    .await
                    .unwrap(),
                r(5, 5)
            );
            // Only the position is taken (another stream was written).
            sneak(6, "other", 1).await;
            assert_eq!(
                s.append("s", ExpectedRevision::Exact(5), events(1))
                    .await
                    .unwrap(),
                r(6, 7)
            );
            // A retry after a lost reply looks new to the guess: the event id is taken.
            let batch = events(2);
            let first = s
                .append("s", ExpectedRevision::Exact(6), batch.clone())
                .await
                .unwrap();
            assert_eq!(first, r(8, 9));
            let before = a.group_commit_stats();
            for expected in [ExpectedRevision::Exact(6), ExpectedRevision::Any] {
                assert_eq!(
                    s.append("s", expected, batch.clone()).await.unwrap(),
                    first,
                    "retry with {expected:?}"
                );
            }
            assert_eq!(a.group_commit_stats().events, before.events);

            let all = read_everything(&s).await;
            assert_eq!(positions(&all), (1..=9).collect::<Vec<u64>>());
            assert_eq!(
                revisions(&read_stream(&s, "s").await),
                (1..=8).collect::<Vec<u64>>()
            );
            let stats = a.group_commit_stats();
            assert!(
                stats.one_statement >= 2,
                "the guess was used whenever it could be: {stats:?}"
            );
            assert!(stats.one_statement < stats.commits, "{stats:?}");
        })
        .catch_unwind()
        .await;
        backend.destroy().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

mod postgres_failures {
    use super::*;

    /// The server drops every connection of the store (a restart, a failover, an idle
    /// timeout). Appends may fail while the store reconnects, never lose or duplicate an
    /// event when retried with the same ids, and succeed again shortly; the LISTEN task
    /// reconnects too.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_recovers_when_the_server_drops_its_connections() {
        let backend = PostgresBackend::create().await;
        let outcome = AssertUnwindSafe(async {
            // Opened as `chorus serve` opens it: its pool does not ping a connection
            // before handing it out, so reads meet the dead ones and must retry.
            let a: DynStore = Arc::new(
                PostgresStore::connect_with(backend.options())
                    .await
                    .unwrap(),
            );
            a.append("s", ExpectedRevision::NoStream, events(1))
                .await
                .unwrap();
            // Several idle connections in the pool, all about to die.
            let reads = (0..6).map(|_| read_stream(&a, "s"));
            for events in futures::future::join_all(reads).await {
                assert_eq!(events.len(), 1);
            }
            let mut admin = backend.admin.connect().await.unwrap();
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
            )
            .bind(&backend.database)
            .fetch_all(&mut admin)
            .await
            .unwrap();
            assert!(
                killed.len() >= 2,
                "the appender's and the listener's connections"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            // A read goes through the dead pooled connections to a live one at once.
            assert_eq!(revisions(&read_stream(&a, "s").await), [1]);

            let retried = events(1);
            let mut result = None;
            for _ in 0..50 {
                match a
                    .append("s", ExpectedRevision::Exact(1), retried.clone())
                    .await
                {
                    Ok(r) => {
                        result = Some(r);
                        break;
                    }
                    Err(StoreError::Backend(_)) => {
                        tokio::time::sleep(Duration::from_millis(100)).await
                    }
                    Err(e) => panic!("unexpected error {e}"),
                }
            }
            assert_eq!(
                result.expect("appends work again"),
                AppendResult {
                    revision: 2,
                    position: 2
                }
            );
            assert_eq!(revisions(&read_stream(&a, "s").await), [1, 2]);
            let reads = (0..6).map(|_| read_stream(&a, "s"));
            for events in futures::future::join_all(reads).await {
                assert_eq!(
                    revisions(&events),
                    [1, 2],
                    "reads work on fresh connections"
                );
            }
            assert_eq!(a.stream_revision("s").await.unwrap(), 2);

            let mut head = a.watch_head();
            let b = backend.open_another().await;
            b.append("s", ExpectedRevision::Exact(2), events(1))
                .await
                .unwrap();
            timeout(Duration::from_secs(5), head.wait_for(|&p| p == 3))
                .await
                .expect("notified again after reconnecting")
                .unwrap();
            admin.close().await.ok();
        })
        .catch_unwind()
        .await;
        backend.destroy().await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    }
}

mod sqlite_processes {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn two_stores_sharing_one_file_append_concurrently_without_gaps() {
        let backend = SqliteBackend::create().await;
        let a = backend.store();
        let b = backend.open_another().await;
        let reader = backend.open_another().await;
        appends_from_several_stores_never_let_a_reader_skip(vec![a, b], reader, 4, 100).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_store_learns_of_another_stores_commits_by_polling() {
        let backend = SqliteBackend::create().await;
        let a = backend.store();
        let b = backend.open_another().await;
        let mut head = a.watch_head();
        b.append("s", ExpectedRevision::Any, events(2))
            .await
            .unwrap();
        timeout(Duration::from_secs(3), head.wait_for(|&p| p == 2))
            .await
            .expect("head polled")
            .unwrap();
    }
}
