//! Append throughput of the SQL backends: `cargo bench -p store --bench append`.
//!
//! Each writer is a task that appends to its own stream in a loop, waiting for every
//! append before sending the next (a closed loop, like a command handler), for a fixed
//! number of appends. Every scenario is timed from the first append to the last answer;
//! the figure is committed events per second. Concurrent writers share commits through
//! the backend's group-commit appender, so more writers means more appends per commit.
//!
//! PostgreSQL: `CHORUS_BENCH_DATABASE_URL`, else `CHORUS_TEST_DATABASE_URL`, else
//! `postgres://postgres@127.0.0.1:5432/postgres`; the bench creates and drops its own
//! database. `CHORUS_BENCH_SCALE` (default 1) multiplies the number of appends;
//! `CHORUS_BENCH_BACKENDS` (`sqlite`, `postgres`, default both) picks the backends.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor};
use store::{
    DynStore, ExpectedRevision, GroupCommitStats, Metadata, NewEvent, PostgresStore, SqliteStore,
    StoreError,
};
use uuid::Uuid;

/// One measured configuration.
struct Scenario {
    writers: usize,
    events_per_append: usize,
    appends_per_writer: usize,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        writers: 1,
        events_per_append: 1,
        appends_per_writer: 2_000,
    },
    Scenario {
        writers: 8,
        events_per_append: 1,
        appends_per_writer: 1_500,
    },
    Scenario {
        writers: 1,
        events_per_append: 10,
        appends_per_writer: 500,
    },
    Scenario {
        writers: 8,
        events_per_append: 10,
        appends_per_writer: 400,
    },
    // Beyond the brief: how far group commit carries single-event appends when many
    // requests are in flight at once (a busy server has many concurrent handlers).
    Scenario {
        writers: 64,
        events_per_append: 1,
        appends_per_writer: 250,
    },
];

struct Measurement {
    backend: &'static str,
    writers: usize,
    events_per_append: usize,
    events: usize,
    elapsed: Duration,
    /// Transactions the appender committed during the run.
    commits: u64,
}

impl Measurement {
    fn events_per_second(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    fn appends_per_commit(&self) -> f64 {
        (self.events / self.events_per_append) as f64 / self.commits.max(1) as f64
    }
}

/// A store under test, and how to read its group-commit counters.
struct Subject {
    name: &'static str,
    store: DynStore,
    stats: Box<dyn Fn() -> GroupCommitStats>,
}

fn event(i: usize) -> NewEvent {
    NewEvent {
        // Time-ordered, as the command handlers make them (`commands::encode`).
        event_id: Uuid::now_v7(),
        event_type: "MessageCreated".into(),
        version: 1,
        data: json!({
            "id": i,
            "channel_id": "1234567890123456789",
            "author_id": "9876543210987654321",
            "content": "the quick brown fox jumps over the lazy dog",
        }),
        metadata: Metadata::system("bench"),
    }
}

async fn measure(
    subject: &Subject,
    scenario: &Scenario,
    scale: usize,
) -> Result<Measurement, StoreError> {
    let store = &subject.store;
    let appends = scenario.appends_per_writer * scale;
    let before = (subject.stats)();
    let run = Uuid::new_v4().simple().to_string();
    let started = Instant::now();
    let tasks: Vec<_> = (0..scenario.writers)
        .map(|w| {
            let store = store.clone();
            let stream = format!("bench-{run}-{w}");
            let per_append = scenario.events_per_append;
            tokio::spawn(async move {
                for a in 0..appends {
                    let events = (0..per_append).map(|k| event(a * per_append + k)).collect();
                    store.append(&stream, ExpectedRevision::Any, events).await?;
                }
                Ok::<_, StoreError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .map_err(|e| StoreError::Backend(format!("writer task: {e}")))??;
    }
    let elapsed = started.elapsed();
    Ok(Measurement {
        backend: subject.name,
        writers: scenario.writers,
        events_per_append: scenario.events_per_append,
        events: scenario.writers * appends * scenario.events_per_append,
        elapsed,
        commits: (subject.stats)().commits - before.commits,
    })
}

async fn bench_backend(
    subject: Subject,
    scale: usize,
    out: &mut Vec<Measurement>,
) -> Result<(), StoreError> {
    // Warm up: connections, statement caches, the first pages of the table.
    measure(
        &subject,
        &Scenario {
            writers: 8,
            events_per_append: 1,
            appends_per_writer: 100,
        },
        1,
    )
    .await?;
    for scenario in SCENARIOS {
        let m = measure(&subject, scenario, scale).await?;
        eprintln!(
            "{:<10} writers={:<3} events/append={:<3} {:>7} events in {:>6.2}s = {:>8.0} events/s, {:>5.1} appends/commit",
            m.backend,
            m.writers,
            m.events_per_append,
            m.events,
            m.elapsed.as_secs_f64(),
            m.events_per_second(),
            m.appends_per_commit(),
        );
        out.push(m);
    }
    Ok(())
}

fn postgres_url() -> String {
    std::env::var("CHORUS_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("CHORUS_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn bench_postgres(scale: usize, out: &mut Vec<Measurement>) -> Result<(), StoreError> {
    let url = postgres_url();
    let admin = PgConnectOptions::from_str(&url)?;
    let mut conn = admin
        .connect()
        .await
        .map_err(|e| StoreError::Backend(format!("PostgreSQL at {url} is unreachable: {e}")))?;
    let database = format!("chorus_bench_{}", Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {database}").as_str())
        .await?;
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(admin.clone().database(&database))
        .await?;
    let store = Arc::new(PostgresStore::from_pool(pool.clone()).await?);
    pool.execute("CREATE TABLE commit_probe (x integer)")
        .await?;
    let started = Instant::now();
    for i in 0..PROBE_COMMITS {
        sqlx::query("INSERT INTO commit_probe VALUES ($1)")
            .bind(i as i32)
            .execute(&pool)
            .await?;
    }
    report_probe(out, "PostgreSQL", started.elapsed());
    let subject = Subject {
        name: "PostgreSQL",
        store: store.clone(),
        stats: Box::new(move || store.group_commit_stats()),
    };
    let outcome = bench_backend(subject, scale, out).await;
    pool.close().await;
    conn.execute(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)").as_str())
        .await?;
    conn.close().await?;
    outcome
}

async fn bench_sqlite(scale: usize, out: &mut Vec<Measurement>) -> Result<(), StoreError> {
    let dir = tempfile::tempdir().map_err(|e| StoreError::Backend(e.to_string()))?;
    let path = dir.path().join("bench.db");
    let store = Arc::new(SqliteStore::open(&path.display().to_string()).await?);
    let pool = store.pool();
    pool.execute("CREATE TABLE commit_probe (x integer)")
        .await?;
    let started = Instant::now();
    for i in 0..PROBE_COMMITS {
        sqlx::query("INSERT INTO commit_probe VALUES (?1)")
            .bind(i as i32)
            .execute(pool)
            .await?;
    }
    report_probe(out, "SQLite", started.elapsed());
    let subject = Subject {
        name: "SQLite",
        store: store.clone(),
        stats: Box::new(move || store.group_commit_stats()),
    };
    bench_backend(subject, scale, out).await
}

/// How many one-row autocommit INSERTs measure a backend's bare commit latency.
const PROBE_COMMITS: usize = 300;

/// Records the bare commit latency as a pseudo-measurement (0 writers): the floor under
/// every group commit, and so the ceiling for closed-loop writers,
/// `writers x events per append / latency`.
fn report_probe(out: &mut Vec<Measurement>, backend: &'static str, elapsed: Duration) {
    let latency = elapsed / PROBE_COMMITS as u32;
    eprintln!(
        "{backend:<10} bare commit (one-row INSERT, autocommit, one at a time): {:.3} ms",
        latency.as_secs_f64() * 1e3
    );
    out.push(Measurement {
        backend,
        writers: 0,
        events_per_append: 1,
        events: PROBE_COMMITS,
        elapsed,
        commits: PROBE_COMMITS as u64,
    });
}

fn print_table(results: &[Measurement]) {
    for m in results.iter().filter(|m| m.writers == 0) {
        println!(
            "{}: bare commit latency {:.3} ms ({:.0} commits/s)",
            m.backend,
            m.elapsed.as_secs_f64() * 1e3 / m.events as f64,
            m.events_per_second()
        );
    }
    println!();
    println!(
        "| backend | writers | events per append | events | seconds | events/s | appends per commit |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for m in results.iter().filter(|m| m.writers > 0) {
        println!(
            "| {} | {} | {} | {} | {:.2} | {:.0} | {:.1} |",
            m.backend,
            m.writers,
            m.events_per_append,
            m.events,
            m.elapsed.as_secs_f64(),
            m.events_per_second(),
            m.appends_per_commit(),
        );
    }
}

fn main() -> Result<(), StoreError> {
    let scale = std::env::var("CHORUS_BENCH_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| StoreError::Backend(e.to_string()))?;
    let mut results = Vec::new();
    let only = std::env::var("CHORUS_BENCH_BACKENDS").unwrap_or_default();
    let wanted = |name: &str| only.is_empty() || only.contains(name);
    runtime.block_on(async {
        if wanted("sqlite") {
            bench_sqlite(scale, &mut results).await?;
        }
        if wanted("postgres") {
            bench_postgres(scale, &mut results).await?;
        }
        Ok::<_, StoreError>(())
    })?;
    print_table(&results);
    Ok(())
}
