//! Read-model catch-up rate: append N realistic events (messages in a few channels of one
//! guild, with some edits and deletions) to a fresh SQLite and a fresh PostgreSQL event
//! log, then time the runner from position 0 to the head, and a full rebuild.
//!
//! `cargo bench -p projections --bench catchup` (N from `CHORUS_BENCH_EVENTS`, default
//! 50000; PostgreSQL from `CHORUS_TEST_DATABASE_URL`; `CHORUS_BENCH_BACKENDS=sqlite` or
//! `postgres` runs one).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::Backend;
use domain::channel::ChannelEvent;
use domain::guild::{ChannelKind, GuildEvent};
use domain::user::UserEvent;
use domain::values::{ChannelName, Content, GuildName, Username};
use domain::{ChannelId, DomainEvent, GuildId, MessageId, UserId};
use projections::Projections;
use store::{Actor, DynStore, ExpectedRevision, Metadata, NewEvent, StreamAppend};
use time::OffsetDateTime;

const USERS: u64 = 20;
const CHANNELS: u64 = 5;
/// Messages per channel per append.
const CHUNK: usize = 200;

fn new_event<E: DomainEvent>(e: &E, at: OffsetDateTime) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: e.event_type().to_owned(),
        version: e.version(),
        data: e.to_data(),
        metadata: Metadata {
            actor: Actor::System,
            occurred_at: at,
            correlation_id: "bench".to_owned(),
            reason: None,
        },
    }
}

fn snowflake(n: u64) -> u64 {
    ((1_704_067_200_000 - domain::snowflake::DISCORD_EPOCH_MS) << 22) + (n << 12)
}

/// Appends about `n` events; returns the head.
async fn fill(store: &DynStore, n: u64) -> u64 {
    let mut at = OffsetDateTime::from_unix_timestamp(1_704_067_200).expect("time");
    let mut next = 0u64;
    let mut id = || {
        next += 1;
        snowflake(next)
    };
    let users: Vec<UserId> = (0..USERS).map(|_| UserId::new(id())).collect();
    let guild = GuildId::new(id());
    let channels: Vec<ChannelId> = (0..CHANNELS).map(|_| ChannelId::new(id())).collect();
    let mut appends = Vec::new();
    for (i, u) in users.iter().enumerate() {
        let e = UserEvent::UserRegistered {
            user_id: *u,
            username: Username::parse(&format!("user{i}")).expect("name"),
            password_hash: Some("$argon2id$bench".into()),
            bot: false,
        };
        appends.push(StreamAppend {
            stream_id: domain::streams::user(*u),
            expected: ExpectedRevision::NoStream,
            events: vec![new_event(&e, at)],
        });
    }
    let mut guild_events = vec![GuildEvent::GuildCreated {
        guild_id: guild,
        name: GuildName::parse("Bench").expect("name"),
        owner_id: users[0],
        everyone_permissions: domain::permissions::Permissions::DEFAULT_EVERYONE,
    }];
    for u in &users {
        guild_events.push(GuildEvent::MemberJoined {
            user_id: *u,
            invite_code: None,
        });
    }
    for (i, c) in channels.iter().enumerate() {
        guild_events.push(GuildEvent::ChannelCreated {
            channel_id: *c,
            kind: ChannelKind::Text,
            name: ChannelName::parse(&format!("chan{i}")).expect("name"),
            position: i as i32,
            parent_id: None,
            topic: None,
            nsfw: false,
        });
        appends.push(StreamAppend {
            stream_id: domain::streams::channel(*c),
            expected: ExpectedRevision::NoStream,
            events: vec![new_event(
                &ChannelEvent::ChannelOpened {
                    channel_id: *c,
                    guild_id: Some(guild),
                },
                at,
            )],
        });
    }
    appends.push(StreamAppend {
        stream_id: domain::streams::guild(guild),
        expected: ExpectedRevision::NoStream,
        events: guild_events.iter().map(|e| new_event(e, at)).collect(),
    });
    let mut head = store
        .append_many(appends)
        .await
        .expect("setup")
        .iter()
        .map(|r| r.position)
        .max()
        .unwrap_or(0);
    let mut revisions = vec![1u64; channels.len()];
    let mut k = 0u64;
    while head < n {
        let mut appends = Vec::new();
        for (ci, c) in channels.iter().enumerate() {
            let mut events = Vec::with_capacity(CHUNK);
            let mut recent: Vec<MessageId> = Vec::new();
            while events.len() < CHUNK {
                k += 1;
                at += time::Duration::milliseconds(50);
                let e = if k.is_multiple_of(20) && !recent.is_empty() {
                    ChannelEvent::MessageEdited {
                        message_id: recent[recent.len() / 2],
                        content: Content::parse("edited, with a longer text than before")
                            .expect("content"),
                    }
                } else if k.is_multiple_of(50) && !recent.is_empty() {
                    ChannelEvent::MessageDeleted {
                        message_id: recent.remove(0),
                    }
                } else {
                    let m = MessageId::new(id());
                    recent.push(m);
                    ChannelEvent::MessageCreated {
                        message_id: m,
                        channel_id: *c,
                        guild_id: Some(guild),
                        author_id: users[(k % USERS) as usize],
                        content: Content::parse(&format!(
                            "message {k}: a realistic sentence of chat in a channel"
                        ))
                        .expect("content"),
                        nonce: k
                            .is_multiple_of(3)
                            .then(|| domain::values::Nonce::parse(&k.to_string()).expect("nonce")),
                        tts: false,
                        mention_everyone: false,
                    }
                };
                events.push(new_event(&e, at));
            }
            appends.push(StreamAppend {
                stream_id: domain::streams::channel(*c),
                expected: ExpectedRevision::Exact(revisions[ci]),
                events,
            });
            revisions[ci] += CHUNK as u64;
        }
        head = store
            .append_many(appends)
            .await
            .expect("append")
            .iter()
            .map(|r| r.position)
            .max()
            .unwrap_or(head);
    }
    head
}

struct Row {
    backend: &'static str,
    events: u64,
    fill: Duration,
    read: Duration,
    catchup: Duration,
    rebuild: Duration,
}

async fn run(backend: Backend, n: u64) -> Row {
    let e = common::env(backend).await;
    let started = Instant::now();
    let head = fill(&e.store, n).await;
    let fill_time = started.elapsed();

    // Reading the log alone (the floor under any catch-up).
    let started = Instant::now();
    let mut after = 0;
    while after < head {
        let page = e.store.read_all(after, 512).await.expect("read");
        after = page.last().map_or(head, |e| e.position);
    }
    let read = started.elapsed();

    let started = Instant::now();
    let p = Projections::start(e.store.clone(), e.db.clone(), None)
        .await
        .expect("start");
    assert!(
        p.wait_for(head, Duration::from_secs(600)).await,
        "caught up"
    );
    let catchup = started.elapsed();
    p.shutdown().await;

    let started = Instant::now();
    projections::rebuild(&*e.store, &e.db, projections::READ_MODELS, |_, _| {})
        .await
        .expect("rebuild");
    let rebuild = started.elapsed();
    Row {
        backend: match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        },
        events: head,
        fill: fill_time,
        read,
        catchup,
        rebuild,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --all-targets` runs this main without
    // it, in debug: do nothing there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let n: u64 = std::env::var("CHORUS_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let rows: Vec<Row> = rt.block_on(async {
        let mut rows = Vec::new();
        let only = std::env::var("CHORUS_BENCH_BACKENDS").unwrap_or_default();
        for backend in [Backend::Sqlite, Backend::Postgres] {
            let name = match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            };
            if only.is_empty() || only.split(',').any(|b| b == name) {
                rows.push(run(backend, n).await);
            }
        }
        rows
    });
    println!();
    println!(
        "| backend  | events | append (s) | read log (s) | catch-up (s) | catch-up events/s | rebuild (s) | rebuild events/s |"
    );
    println!(
        "|----------|--------|------------|--------------|--------------|-------------------|-------------|------------------|"
    );
    for r in rows {
        let rate = |d: Duration| r.events as f64 / d.as_secs_f64().max(1e-9);
        println!(
            "| {:<8} | {:>6} | {:>10.2} | {:>12.2} | {:>12.2} | {:>17.0} | {:>11.2} | {:>16.0} |",
            r.backend,
            r.events,
            r.fill.as_secs_f64(),
            r.read.as_secs_f64(),
            r.catchup.as_secs_f64(),
            rate(r.catchup),
            r.rebuild.as_secs_f64(),
            rate(r.rebuild),
        );
    }
}
