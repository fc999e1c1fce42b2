//! The read side against real databases: every test runs on SQLite and on PostgreSQL.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bus::{Bus, Envelope, InProcessBus};
use common::{community, env, moderation, Backend, World, WAIT};
use projections::queries::{self, MessageAnchor};
use projections::{Projections, ReadDb};

on_both_backends!(
    events_from_decide_end_up_in_the_read_models,
    messages_page_newest_first_before_after_and_around,
    the_checkpoint_is_written_with_the_changes_and_a_restarted_runner_resumes_without_double_applying,
    rebuilding_yields_identical_tables_and_the_runner_keeps_going,
    wait_for_returns_once_the_read_models_include_the_position,
    the_publisher_puts_every_event_on_the_bus_with_the_expected_dispatches_and_subjects,
    two_runners_on_the_same_database_do_not_double_apply,
    unknown_and_malformed_events_are_skipped_without_stopping_the_runner,
    wire_shapes_match_the_snapshots,
    expired_and_used_up_invites_are_not_found,
    status_reports_each_checkpoint_and_its_lag,
    moderation_reaches_the_read_models_the_bus_and_the_audit_log,
    only_replayable_transactions_skip_the_commit_flush,
    the_read_models_go_on_while_the_bus_fails_and_everything_is_published_once_it_is_back,
    a_backlog_found_at_start_is_published_once_and_in_order,
);

async fn start(e: &common::Env) -> Projections {
    Projections::start(e.store.clone(), e.db.clone(), None)
        .await
        .expect("start projections")
}

async fn events_from_decide_end_up_in_the_read_models(backend: Backend) {
    let e = env(backend).await;
    let p = start(&e).await;
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    assert!(p.wait_for(w.position, WAIT).await, "caught up");
    let db = &e.db;

    let alice = queries::user(db, c.alice).await.unwrap().expect("alice");
    assert_eq!(alice.username, "alice");
    assert!(!alice.bot);
    let bob = queries::user_by_name(db, "BOB")
        .await
        .unwrap()
        .expect("bob");
    assert_eq!(bob.id, c.bob);
    assert!(bob.bot);
    assert!(queries::user_by_name(db, "carol").await.unwrap().is_none());

    let guild = queries::guild(db, c.guild).await.unwrap().expect("guild");
    assert_eq!(guild.name, "Chorus");
    assert_eq!(guild.owner_id, c.alice);
    assert_eq!(guild.roles.len(), 1);
    assert_eq!(guild.roles[0].id.get(), c.guild.get());
    assert_eq!(
        guild.roles[0].permissions,
        domain::permissions::Permissions::DEFAULT_EVERYONE
            .0
            .to_string()
    );

    let channels = queries::guild_channels(db, c.guild).await.unwrap();
    let ids: Vec<_> = channels.iter().map(|ch| ch.id).collect();
    for id in [c.general, c.category, c.dev, c.voice] {
        assert!(ids.contains(&id), "channel {id} listed");
    }
    let dev = queries::channel(db, c.dev).await.unwrap().expect("dev");
    assert_eq!(dev.parent_id, Some(c.category));
    assert_eq!(dev.topic.as_deref(), Some("a topic"));
    assert_eq!(dev.last_message_id, Some(c.messages[3]));
    let general = queries::channel(db, c.general)
        .await
        .unwrap()
        .expect("general");
    assert_eq!(general.last_message_id, Some(c.deleted));
    let voice = queries::channel(db, c.voice).await.unwrap().expect("voice");
    assert_eq!(voice.kind, 2);
    assert!(voice.voice.is_some());

    assert!(queries::is_member(db, c.guild, c.bob).await.unwrap());
    assert!(!queries::is_member(db, c.guild, domain::UserId::new(12345))
        .await
        .unwrap());
    let member = queries::member(db, c.guild, c.bob)
        .await
        .unwrap()
        .expect("member");
    assert_eq!(member.user.expect("user").id, c.bob);
    assert_eq!(
        queries::guild_ids_of(db, c.bob).await.unwrap(),
        vec![c.guild]
    );
    let guilds = queries::user_guilds(db, c.alice).await.unwrap();
    assert_eq!(guilds.len(), 1);
    assert!(guilds[0].owner);
    let guilds = queries::user_guilds(db, c.bob).await.unwrap();
    assert!(!guilds[0].owner);
    assert_eq!(
        guilds[0].permissions,
        domain::permissions::Permissions::DEFAULT_EVERYONE
            .0
            .to_string()
    );

    let page = queries::messages(db, c.general, MessageAnchor::Latest, 50)
        .await
        .unwrap();
    let contents: Vec<_> = page.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(
        contents,
        ["fixed", "hi alice", "hello"],
        "newest first, deleted gone"
    );
    assert!(page[0].edited_timestamp.is_some());
    assert_eq!(page[2].nonce.as_deref(), Some("n1"));
    assert!(page[1].member.is_some());
    assert!(queries::message(db, c.general, c.deleted)
        .await
        .unwrap()
        .is_none());
    assert!(queries::message(db, c.dev, c.messages[0])
        .await
        .unwrap()
        .is_none());
    let m = queries::message(db, c.general, c.messages[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.author.id, c.alice);

    let invite = queries::invite(db, "chorus", true)
        .await
        .unwrap()
        .expect("invite");
    assert_eq!(invite.uses, 1);
    assert_eq!(invite.approximate_member_count, Some(2));
    assert_eq!(invite.guild.id, c.guild);
    assert_eq!(invite.channel.id, c.general);

    let gc = queries::guild_create_payload(db, c.guild, c.bob)
        .await
        .unwrap()
        .expect("payload");
    assert_eq!(gc.member_count, 2);
    assert_eq!(gc.channels.len(), 4);
    assert!(gc
        .members
        .iter()
        .any(|m| m.user.as_ref().map(|u| u.id) == Some(c.bob)));
    assert!(
        queries::guild_create_payload(db, c.guild, domain::UserId::new(99))
            .await
            .unwrap()
            .is_none()
    );
    p.shutdown().await;
}

async fn messages_page_newest_first_before_after_and_around(backend: Backend) {
    let e = env(backend).await;
    let p = start(&e).await;
    let mut w = World::new(e.store.clone());
    let alice = w.register("alice", false).await;
    let (_, general) = w.create_guild(alice, "Paging").await;
    let mut ids = Vec::new();
    for i in 1..=10 {
        ids.push(w.send(general, alice, &format!("m{i}"), None).await);
    }
    assert!(p.wait_for(w.position, WAIT).await);
    let names = |page: Vec<projections::wire::Message>| -> Vec<String> {
        page.into_iter().map(|m| m.content).collect()
    };
    let db = &e.db;
    let get = |anchor, limit| queries::messages(db, general, anchor, limit);
    assert_eq!(
        names(get(MessageAnchor::Latest, 3).await.unwrap()),
        ["m10", "m9", "m8"]
    );
    assert_eq!(
        names(get(MessageAnchor::Before(ids[7]), 3).await.unwrap()),
        ["m7", "m6", "m5"]
    );
    assert_eq!(
        names(get(MessageAnchor::After(ids[1]), 3).await.unwrap()),
        ["m5", "m4", "m3"]
    );
    assert_eq!(
        names(get(MessageAnchor::Around(ids[4]), 4).await.unwrap()),
        ["m7", "m6", "m5", "m4"]
    );
    assert_eq!(
        get(MessageAnchor::Latest, 0).await.unwrap().len(),
        1,
        "limit clamps to 1"
    );
    assert_eq!(get(MessageAnchor::Latest, 1000).await.unwrap().len(), 10);
    p.shutdown().await;
}

async fn count(db: &ReadDb, sql: &str) -> i64 {
    use sqlx::Row as _;
    sqlx::query(sql)
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .try_get::<i64, _>(0)
        .unwrap()
}

async fn the_checkpoint_is_written_with_the_changes_and_a_restarted_runner_resumes_without_double_applying(
    backend: Backend,
) {
    let e = env(backend).await;
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    let p = start(&e).await;
    assert!(p.wait_for(w.position, WAIT).await);
    p.shutdown().await;
    let first = w.position;
    assert_eq!(
        e.db.checkpoint(projections::READ_MODELS).await.unwrap(),
        first
    );
    let messages_before = count(&e.db, "SELECT COUNT(*) FROM messages").await;

    // While no runner runs: more joins through the invite and more messages.
    for i in 0..5 {
        let u = w.register(&format!("user{i}"), false).await;
        w.join(u, "chorus").await;
        w.send(c.general, u, "late", None).await;
    }
    // Not applied yet: the checkpoint did not move and the rows are as they were.
    assert_eq!(
        e.db.checkpoint(projections::READ_MODELS).await.unwrap(),
        first
    );
    assert_eq!(
        count(&e.db, "SELECT COUNT(*) FROM messages").await,
        messages_before
    );

    let p = start(&e).await;
    assert_eq!(p.position(), first, "resumes at the stored checkpoint");
    assert!(p.wait_for(w.position, WAIT).await);
    p.shutdown().await;
    assert_eq!(
        e.db.checkpoint(projections::READ_MODELS).await.unwrap(),
        w.position
    );
    assert_eq!(
        count(&e.db, "SELECT uses FROM invites WHERE code = 'chorus'").await,
        6
    );
    assert_eq!(
        count(&e.db, "SELECT COUNT(*) FROM messages").await,
        messages_before + 5
    );
    assert_eq!(count(&e.db, "SELECT COUNT(*) FROM members").await, 7);

    // A third start with nothing new applies nothing again.
    let p = start(&e).await;
    assert!(p.wait_for(w.position, WAIT).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    p.shutdown().await;
    assert_eq!(
        count(&e.db, "SELECT uses FROM invites WHERE code = 'chorus'").await,
        6
    );
}

async fn rebuilding_yields_identical_tables_and_the_runner_keeps_going(backend: Backend) {
    let e = env(backend).await;
    let p = start(&e).await;
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    moderation(&mut w, &c).await;
    // More than a rebuild applies under the lock, so the replay runs page by page.
    w.send_many(c.dev, c.bob, 6000).await;
    w.edit(c.dev, c.bob, c.messages[3], "edited after the bulk")
        .await;
    assert!(p.wait_for(w.position, WAIT).await);
    let before = e.db.dump().await.unwrap();
    assert!(
        before.iter().all(|(_, rows)| !rows.is_empty()),
        "every table has rows"
    );

    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = calls.clone();
    let report = projections::rebuild(&*e.store, &e.db, projections::READ_MODELS, move |d, t| {
        seen.lock().unwrap().push((d, t))
    })
    .await
    .expect("rebuild");
    assert_eq!(report.position, w.position);
    assert_eq!(report.tables.len(), projections::schema::Table::ALL.len());
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.last(), Some(&(w.position, w.position)));
    assert!(calls.len() > 2, "progress reported page by page: {calls:?}");
    assert!(
        calls.windows(2).all(|p| p[0].0 <= p[1].0),
        "progress never goes back"
    );
    assert_eq!(
        e.db.dump().await.unwrap(),
        before,
        "rebuilt tables equal the live ones"
    );
    assert_eq!(
        e.db.checkpoint(projections::READ_MODELS).await.unwrap(),
        w.position
    );

    // One table alone, twice (the second reuses the names the first left behind).
    for _ in 0..2 {
        let report = projections::rebuild(&*e.store, &e.db, "messages", |_, _| {})
            .await
            .expect("rebuild messages");
        assert_eq!(report.tables, ["messages"]);
        assert_eq!(e.db.dump().await.unwrap(), before);
    }
    assert!(projections::rebuild(&*e.store, &e.db, "nope", |_, _| {})
        .await
        .is_err());

    // The runner, still running, keeps applying to the swapped-in tables.
    let late = w.send(c.general, c.alice, "after the swap", None).await;
    let latecomer = w.register("latecomer", false).await;
    w.join(latecomer, "chorus").await;
    assert!(p.wait_for(w.position, WAIT).await);
    assert!(queries::message(&e.db, c.general, late)
        .await
        .unwrap()
        .is_some());
    assert_eq!(
        count(&e.db, "SELECT uses FROM invites WHERE code = 'chorus'").await,
        5,
        "bob, carol, dave twice (moderation), the latecomer"
    );

    // Rebuilds while commands keep appending and the runner keeps applying: afterwards
    // the tables equal a rebuild made in peace (nothing applied twice, nothing lost).
    let general = c.general;
    let writer = tokio::spawn(async move {
        for i in 0..15 {
            let u = w.register(&format!("busy{i}"), false).await;
            w.join(u, "chorus").await;
            w.send(general, u, "during the rebuild", None).await;
        }
        w
    });
    for name in ["read_models", "invites", "messages", "read_models"] {
        projections::rebuild(&*e.store, &e.db, name, |_, _| {})
            .await
            .expect("rebuild under load");
    }
    let mut w = writer.await.unwrap();
    assert!(p.wait_for(w.position, WAIT).await);
    p.shutdown().await;
    assert_eq!(
        count(&e.db, "SELECT uses FROM invites WHERE code = 'chorus'").await,
        20
    );
    let settled = e.db.dump().await.unwrap();
    projections::rebuild(&*e.store, &e.db, projections::READ_MODELS, |_, _| {})
        .await
        .unwrap();
    assert_eq!(e.db.dump().await.unwrap(), settled);

    // And a rebuild while the runner is stopped catches up to the head.
    let extra = w.send(c.general, c.alice, "offline", None).await;
    projections::rebuild(&*e.store, &e.db, projections::READ_MODELS, |_, _| {})
        .await
        .expect("offline rebuild");
    assert_eq!(
        e.db.checkpoint(projections::READ_MODELS).await.unwrap(),
        w.position
    );
    assert!(queries::message(&e.db, c.general, extra)
        .await
        .unwrap()
        .is_some());
}

async fn wait_for_returns_once_the_read_models_include_the_position(backend: Backend) {
    let e = env(backend).await;
    let p = start(&e).await;
    let mut w = World::new(e.store.clone());
    let alice = w.register("alice", false).await;
    assert!(p.wait_for(w.position, WAIT).await);
    assert!(p.position() >= w.position);
    assert!(
        queries::user(&e.db, alice).await.unwrap().is_some(),
        "read your writes"
    );
    let (_, general) = w.create_guild(alice, "Waiting").await;
    let id = w.send(general, alice, "now", None).await;
    assert!(p.wait_for(w.position, WAIT).await);
    assert!(queries::message(&e.db, general, id)
        .await
        .unwrap()
        .is_some());
    let start = std::time::Instant::now();
    assert!(
        !p.wait_for(w.position + 100, Duration::from_millis(200))
            .await
    );
    assert!(start.elapsed() >= Duration::from_millis(200));
    p.shutdown().await;
}

async fn collect_until(sub: &mut bus::BusSubscription, position: u64) -> Vec<(String, Envelope)> {
    let mut out = Vec::new();
    loop {
        let msg = tokio::time::timeout(WAIT, sub.next())
            .await
            .expect("envelopes arrive")
            .expect("subscription open");
        let env = Envelope::from_bytes(&msg.payload).expect("an envelope");
        let done = env.position >= position;
        out.push((msg.subject, env));
        if done {
            // MemberJoined publishes twice at one position; take what is queued.
            while let Ok(Some(msg)) =
                tokio::time::timeout(Duration::from_millis(200), sub.next()).await
            {
                out.push((msg.subject, Envelope::from_bytes(&msg.payload).unwrap()));
            }
            return out;
        }
    }
}

async fn the_publisher_puts_every_event_on_the_bus_with_the_expected_dispatches_and_subjects(
    backend: Backend,
) {
    let e = env(backend).await;
    let bus = InProcessBus::default();
    let mut sub = bus.subscribe("chorus.>").await.unwrap();
    let p = Projections::start(e.store.clone(), e.db.clone(), Some(Arc::new(bus.clone())))
        .await
        .unwrap();
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    let got = collect_until(&mut sub, w.position).await;
    p.shutdown().await;

    // Every event, in log order (two envelopes for a MemberJoined), none twice.
    assert_every_event_once_in_order(&got, w.position);

    let find = |dispatch: &str| -> Vec<&(String, Envelope)> {
        got.iter()
            .filter(|(_, e)| e.dispatch.as_deref() == Some(dispatch))
            .collect()
    };
    let (g, general) = (c.guild.get(), c.general.get());
    let creates = find("MESSAGE_CREATE");
    assert_eq!(creates.len(), 5);
    let (subject, first) = creates[0];
    assert_eq!(
        subject,
        &bus::subjects::guild_channel(g, general, "message_create")
    );
    assert_eq!(first.guild_id, Some(g));
    assert_eq!(first.channel_id, Some(general));
    assert_eq!(first.stream_id, format!("channel-{general}"));
    assert_eq!(first.data["content"], "hello");
    assert_eq!(first.data["nonce"], "n1");
    assert_eq!(first.data["author"]["id"], c.alice.to_string());
    assert_eq!(first.data["member"]["roles"], serde_json::json!([]));
    // MESSAGE_CREATE shows what was sent, even though the read model was edited since.
    let typo = creates
        .iter()
        .find(|(_, e)| e.data["id"] == c.edited.to_string())
        .unwrap();
    assert_eq!(typo.1.data["content"], "typo");
    assert_eq!(typo.1.data["edited_timestamp"], serde_json::Value::Null);

    let updates = find("MESSAGE_UPDATE");
    assert_eq!(updates.len(), 1);
    assert_eq!(
        updates[0].0,
        bus::subjects::guild_channel(g, general, "message_update")
    );
    assert_eq!(updates[0].1.data["content"], "fixed");
    assert!(updates[0].1.data["edited_timestamp"].is_string());

    let deletes = find("MESSAGE_DELETE");
    assert_eq!(deletes.len(), 1);
    assert_eq!(
        deletes[0].0,
        bus::subjects::guild_channel(g, general, "message_delete")
    );
    assert_eq!(
        deletes[0].1.data,
        serde_json::json!({"id": c.deleted.to_string(), "channel_id": general.to_string(), "guild_id": g.to_string()})
    );

    let channels = find("CHANNEL_CREATE");
    assert_eq!(channels.len(), 4);
    assert!(channels
        .iter()
        .all(|(s, _)| s == &bus::subjects::guild(g, "channel_create")));

    let adds = find("GUILD_MEMBER_ADD");
    assert_eq!(adds.len(), 2, "the owner and bob");
    assert!(adds
        .iter()
        .all(|(s, _)| s == &bus::subjects::guild(g, "guild_member_add")));
    assert_eq!(adds[1].1.data["user"]["id"], c.bob.to_string());
    assert_eq!(adds[1].1.data["guild_id"], g.to_string());

    let guild_creates = find("GUILD_CREATE");
    assert_eq!(guild_creates.len(), 2);
    let (subject, owner_gc) = guild_creates[0];
    assert_eq!(subject, &bus::subjects::user(c.alice.get(), "guild_create"));
    assert_eq!(owner_gc.user_ids, vec![c.alice.get()]);
    let listed = owner_gc.data["channels"].as_array().unwrap();
    assert!(
        listed
            .iter()
            .any(|ch| ch["id"] == general.to_string().as_str()),
        "the owner's GUILD_CREATE lists #general, created after the MemberJoined"
    );
    assert_eq!(
        guild_creates[1].0,
        bus::subjects::user(c.bob.get(), "guild_create")
    );
    assert_eq!(guild_creates[1].1.data["unavailable"], false);

    let invites = find("INVITE_CREATE");
    assert_eq!(invites.len(), 1);
    assert_eq!(invites[0].0, bus::subjects::guild(g, "invite_create"));
    assert_eq!(invites[0].1.data["code"], "chorus");
    assert_eq!(invites[0].1.data["uses"], 0);

    // Events without a dispatch still travel (for gap detection), with no data.
    let users: Vec<_> = got
        .iter()
        .filter(|(_, e)| e.event_type == "UserRegistered")
        .collect();
    assert_eq!(users.len(), 2);
    assert!(users
        .iter()
        .all(|(_, e)| e.dispatch.is_none() && e.data.is_null()));
    assert_eq!(
        e.db.checkpoint(projections::PUBLISHER).await.unwrap(),
        w.position
    );
}

async fn two_runners_on_the_same_database_do_not_double_apply(backend: Backend) {
    let e = env(backend).await;
    let db2 = ReadDb::connect(&e.url).await.unwrap();
    let p1 = start(&e).await;
    let p2 = Projections::start(e.store.clone(), db2, None)
        .await
        .unwrap();
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    let mut joined = 1;
    for i in 0..30 {
        let u = w.register(&format!("member{i}"), false).await;
        w.join(u, "chorus").await;
        joined += 1;
        w.send(c.general, u, "hello", None).await;
    }
    assert!(p1.wait_for(w.position, WAIT).await);
    assert!(p2.wait_for(w.position, WAIT).await);
    p1.shutdown().await;
    p2.shutdown().await;
    assert_eq!(
        count(&e.db, "SELECT uses FROM invites WHERE code = 'chorus'").await,
        joined
    );
    assert_eq!(
        count(&e.db, "SELECT COUNT(*) FROM members").await,
        joined + 1
    );
    assert_eq!(
        e.db.checkpoint(projections::READ_MODELS).await.unwrap(),
        w.position
    );
}

async fn unknown_and_malformed_events_are_skipped_without_stopping_the_runner(backend: Backend) {
    let e = env(backend).await;
    let p = start(&e).await;
    let mut w = World::new(e.store.clone());
    let alice = w.register("alice", false).await;
    let (guild, general) = w.create_guild(alice, "Robust").await;
    let first = w.send(general, alice, "original", None).await;
    w.append_raw(
        &format!("guild-{guild}"),
        "GuildRenamedInTheFuture",
        serde_json::json!({"name": "x"}),
    )
    .await;
    w.append_raw(
        &format!("channel-{general}"),
        "MessageCreated",
        serde_json::json!({"garbage": true}),
    )
    .await;
    w.append_raw("weird-stream", "Whatever", serde_json::json!(null))
        .await;
    w.append_raw("nodash", "Whatever", serde_json::json!(1))
        .await;
    w.append_raw("guild-notanumber", "GuildCreated", serde_json::json!({}))
        .await;
    // A fact repeated (the same message id again, other content): the first one stands.
    let repeat = serde_json::json!({
        "message_id": first.to_string(), "channel_id": general.to_string(),
        "guild_id": guild.to_string(), "author_id": alice.to_string(),
        "content": "repeated", "nonce": null, "tts": false,
    });
    w.append_raw(&format!("channel-{general}"), "MessageCreated", repeat)
        .await;
    let bob = w.register("bob", false).await;
    assert!(
        p.wait_for(w.position, WAIT).await,
        "the runner got past the bad events"
    );
    assert!(queries::user(&e.db, bob).await.unwrap().is_some());
    let m = queries::message(&e.db, general, first)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(m.content, "original");
    assert_eq!(count(&e.db, "SELECT COUNT(*) FROM messages").await, 1);
    p.shutdown().await;
}

/// Redacts an id string, keeping `null` visible.
fn id() -> insta::internals::Redaction {
    insta::dynamic_redaction(|value, _| match value.as_str() {
        Some(_) => "[id]".into(),
        None => value,
    })
}

/// Redacts a timestamp string, keeping `null` visible; checks its Discord form.
fn ts() -> insta::internals::Redaction {
    insta::dynamic_redaction(|value, _| match value.as_str() {
        Some(t) => {
            assert!(
                t.ends_with("+00:00") && t.len() == 32,
                "Discord timestamp: {t}"
            );
            "[timestamp]".into()
        }
        None => value,
    })
}

async fn wire_shapes_match_the_snapshots(backend: Backend) {
    let e = env(backend).await;
    let p = start(&e).await;
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    assert!(p.wait_for(w.position, WAIT).await);
    let db = &e.db;
    let message = queries::message(db, c.general, c.messages[0])
        .await
        .unwrap()
        .unwrap();
    insta::assert_json_snapshot!("message", message, {
        ".id" => id(), ".channel_id" => id(), ".guild_id" => id(),
        ".author.id" => id(), ".timestamp" => ts(),
        ".member.joined_at" => ts(),
    });
    let edited = queries::message(db, c.general, c.edited)
        .await
        .unwrap()
        .unwrap();
    insta::assert_json_snapshot!("message_edited", edited, {
        ".id" => id(), ".channel_id" => id(), ".guild_id" => id(),
        ".author.id" => id(), ".timestamp" => ts(),
        ".edited_timestamp" => ts(), ".member.joined_at" => ts(),
    });
    let text = queries::channel(db, c.dev).await.unwrap().unwrap();
    insta::assert_json_snapshot!("channel_text", text, {
        ".id" => id(), ".guild_id" => id(), ".parent_id" => id(),
        ".last_message_id" => id(),
    });
    let voice = queries::channel(db, c.voice).await.unwrap().unwrap();
    insta::assert_json_snapshot!("channel_voice", voice, {
        ".id" => id(), ".guild_id" => id(),
    });
    let member = queries::member(db, c.guild, c.bob).await.unwrap().unwrap();
    insta::assert_json_snapshot!("member", member, {
        ".user.id" => id(), ".joined_at" => ts(),
    });
    let gc = queries::guild_create_payload(db, c.guild, c.bob)
        .await
        .unwrap()
        .unwrap();
    insta::assert_json_snapshot!("guild_create", gc, {
        ".id" => id(), ".owner_id" => id(), ".joined_at" => ts(),
        ".roles[].id" => id(),
        ".channels[].id" => id(), ".channels[].guild_id" => id(),
        ".channels[].parent_id" => id(), ".channels[].last_message_id" => id(),
        ".members[].user.id" => id(), ".members[].joined_at" => ts(),
    });
    let invite = queries::invite(db, "chorus", true).await.unwrap().unwrap();
    insta::assert_json_snapshot!("invite", invite, {
        ".guild.id" => id(), ".channel.id" => id(), ".inviter.id" => id(),
        ".created_at" => ts(),
    });
    let guilds = queries::user_guilds(db, c.bob).await.unwrap();
    insta::assert_json_snapshot!("user_guilds", guilds, { "[].id" => id() });
    p.shutdown().await;
}

async fn expired_and_used_up_invites_are_not_found(backend: Backend) {
    let e = env(backend).await;
    let p = start(&e).await;
    let mut w = World::new(e.store.clone());
    let alice = w.register("alice", false).await;
    let (guild, general) = w.create_guild(alice, "Invites").await;
    w.create_invite(alice, guild, general, "once", 0, 1).await;
    w.create_invite(alice, guild, general, "hour", 3600, 0)
        .await;
    let created = w.now_ms() as i64;
    let bob = w.register("bob", false).await;
    assert!(p.wait_for(w.position, WAIT).await);
    let once = queries::invite(&e.db, "once", false)
        .await
        .unwrap()
        .expect("usable");
    assert_eq!(once.expires_at, None);
    assert_eq!(once.approximate_member_count, None);
    let hour = queries::invite_at(&e.db, "hour", false, created)
        .await
        .unwrap()
        .expect("fresh");
    assert!(hour.expires_at.is_some());
    assert!(
        queries::invite_at(&e.db, "hour", false, created + 3_600_000)
            .await
            .unwrap()
            .is_none()
    );
    w.join(bob, "once").await;
    assert!(p.wait_for(w.position, WAIT).await);
    assert!(
        queries::invite(&e.db, "once", false)
            .await
            .unwrap()
            .is_none(),
        "used up"
    );
    assert!(queries::invite(&e.db, "unknown", false)
        .await
        .unwrap()
        .is_none());
    p.shutdown().await;
}

async fn status_reports_each_checkpoint_and_its_lag(backend: Backend) {
    let e = env(backend).await;
    let mut w = World::new(e.store.clone());
    community(&mut w).await;
    let before = projections::status(&*e.store, &e.db).await.unwrap();
    assert_eq!(before[0].name, "read_models");
    assert_eq!(before[0].lag, w.position);
    let bus = InProcessBus::default();
    let p = Projections::start(e.store.clone(), e.db.clone(), Some(Arc::new(bus)))
        .await
        .unwrap();
    assert!(p.wait_for(w.position, WAIT).await);
    p.shutdown().await;
    let after = projections::status(&*e.store, &e.db).await.unwrap();
    let read = after.iter().find(|s| s.name == "read_models").unwrap();
    assert_eq!(
        (read.position, read.head, read.lag),
        (w.position, w.position, 0)
    );
    let publisher = after
        .iter()
        .find(|s| s.name == "publisher")
        .expect("publisher row");
    assert_eq!(publisher.head, w.position);
}

async fn moderation_reaches_the_read_models_the_bus_and_the_audit_log(backend: Backend) {
    use domain::permissions::Permissions;
    let e = env(backend).await;
    let bus = InProcessBus::default();
    let mut sub = bus.subscribe("chorus.>").await.unwrap();
    let p = Projections::start(e.store.clone(), e.db.clone(), Some(Arc::new(bus.clone())))
        .await
        .unwrap();
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    let m = moderation(&mut w, &c).await;
    let got = collect_until(&mut sub, w.position).await;
    assert!(p.wait_for(w.position, WAIT).await);
    let db = &e.db;

    // Roles: @everyone, Helpers, Mods (lowest first); Temp is gone.
    let roles = queries::roles(db, c.guild).await.unwrap();
    let names: Vec<&str> = roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["@everyone", "Helpers", "Mods"]);
    assert_eq!(roles[1].position, 1);
    assert_eq!(roles[1].color, 0x2ecc71);
    assert_eq!(roles[2].position, 2);
    assert!(roles[2].hoist);
    assert!(Permissions::from_decimal(&roles[2].permissions)
        .unwrap()
        .contains(Permissions::BAN_MEMBERS));
    let guild = queries::guild(db, c.guild).await.unwrap().unwrap();
    assert_eq!(
        guild.roles, roles,
        "the guild's roles come from the read model"
    );

    // Members: carol's nickname, role and timeout; bob's role; dave is gone.
    let carol = queries::member(db, c.guild, m.carol)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(carol.nick.as_deref(), Some("Caz"));
    assert_eq!(carol.roles, vec![m.helpers]);
    let bob = queries::member(db, c.guild, c.bob).await.unwrap().unwrap();
    assert_eq!(bob.roles, vec![m.mods]);
    // A message read over REST carries its author's whole member, roles included, as
    // MESSAGE_CREATE does: discord.py copies a message's member over its cached one.
    let hi = queries::message(db, c.general, c.messages[1])
        .await
        .unwrap()
        .unwrap();
    let hi_member = hi.member.as_ref().expect("bob is a member");
    assert_eq!(hi_member.roles, vec![m.mods]);
    assert_eq!(hi_member.nick, bob.nick);
    let page = queries::messages(db, c.general, MessageAnchor::Latest, 50)
        .await
        .unwrap();
    let listed = page.iter().find(|x| x.id == c.messages[1]).unwrap();
    assert_eq!(listed.member, hi.member);
    assert!(queries::member(db, c.guild, m.dave)
        .await
        .unwrap()
        .is_none());
    let page = queries::members(db, c.guild, None, 1000).await.unwrap();
    assert_eq!(page.len(), 3, "alice, bob, carol");
    let after_first = queries::members(db, c.guild, Some(c.alice), 1)
        .await
        .unwrap();
    assert_eq!(after_first[0].user.as_ref().unwrap().id, c.bob);

    // Bans: dave stays banned with the reason, eve's ban was lifted.
    let bans = queries::bans(db, c.guild, None, None, 1000).await.unwrap();
    assert_eq!(bans.len(), 1);
    assert_eq!(bans[0].user.id, m.dave);
    assert_eq!(bans[0].reason.as_deref(), Some("more spam"));
    assert!(queries::ban(db, c.guild, m.eve).await.unwrap().is_none());

    // Channels: #general's own overwrite and slowmode; #dev shows its category's.
    let general = queries::channel(db, c.general).await.unwrap().unwrap();
    assert_eq!(general.rate_limit_per_user, 10);
    assert_eq!(general.topic.as_deref(), Some("be nice"));
    assert_eq!(
        general.permission_overwrites.len(),
        1,
        "Temp's went with it"
    );
    assert_eq!(
        general.permission_overwrites[0].id,
        m.carol.get().to_string()
    );
    assert_eq!(general.permission_overwrites[0].kind, 1);
    assert_eq!(
        general.permission_overwrites[0].allow,
        Permissions::ATTACH_FILES.bits().to_string()
    );
    assert_eq!(general.permission_overwrites[0].deny, "0");
    let dev = queries::channel(db, c.dev).await.unwrap().unwrap();
    let category = queries::channel(db, c.category).await.unwrap().unwrap();
    assert_eq!(dev.permission_overwrites, category.permission_overwrites);
    assert_eq!(category.permission_overwrites.len(), 1);

    // The audit log, newest first, with reasons and filters.
    let log = queries::audit_log(db, c.guild, queries::AuditFilter::default())
        .await
        .unwrap();
    let types: Vec<u16> = log
        .audit_log_entries
        .iter()
        .map(|e| e.action_type)
        .collect();
    for t in [10, 11, 13, 14, 20, 22, 23, 24, 25, 30, 31, 32, 40, 72] {
        assert!(types.contains(&t), "action type {t} in {types:?}");
    }
    assert!(log
        .audit_log_entries
        .windows(2)
        .all(|p| p[0].id.parse::<u64>().unwrap() > p[1].id.parse::<u64>().unwrap()));
    let kick = log
        .audit_log_entries
        .iter()
        .find(|e| e.action_type == 20)
        .unwrap();
    assert_eq!(kick.reason.as_deref(), Some("spam"));
    assert_eq!(kick.user_id, Some(c.bob));
    assert_eq!(kick.target_id, Some(m.dave.get().to_string()));
    assert!(log.users.iter().any(|u| u.id == m.dave));
    let by_alice = queries::audit_log(
        db,
        c.guild,
        queries::AuditFilter {
            user_id: Some(c.alice),
            action_type: Some(13),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        by_alice.audit_log_entries.len(),
        3,
        "three overwrites created"
    );
    let first_two = queries::audit_log(
        db,
        c.guild,
        queries::AuditFilter {
            limit: Some(2),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(first_two.audit_log_entries, log.audit_log_entries[..2]);
    let older = queries::audit_log(
        db,
        c.guild,
        queries::AuditFilter {
            before: Some(first_two.audit_log_entries[1].id.parse().unwrap()),
            limit: Some(3),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(older.audit_log_entries, log.audit_log_entries[2..5]);
    let newer = queries::audit_log(
        db,
        c.guild,
        queries::AuditFilter {
            after: Some(log.audit_log_entries[3].id.parse().unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(newer.audit_log_entries, log.audit_log_entries[..3]);

    // Dispatches.
    let find = |dispatch: &str| -> Vec<&Envelope> {
        got.iter()
            .map(|(_, e)| e)
            .filter(|e| e.dispatch.as_deref() == Some(dispatch))
            .collect()
    };
    assert_eq!(find("GUILD_ROLE_CREATE").len(), 3);
    assert_eq!(find("GUILD_ROLE_DELETE").len(), 1);
    assert!(!find("GUILD_ROLE_UPDATE").is_empty());
    assert!(!find("GUILD_MEMBER_UPDATE").is_empty());
    assert_eq!(find("GUILD_MEMBER_REMOVE").len(), 2, "a kick and a ban");
    assert_eq!(find("GUILD_BAN_ADD").len(), 2);
    assert_eq!(find("GUILD_BAN_REMOVE").len(), 1);
    assert!(!find("CHANNEL_UPDATE").is_empty());
    let audits = find("GUILD_AUDIT_LOG_ENTRY_CREATE");
    assert_eq!(
        audits.len(),
        log.audit_log_entries.len(),
        "one dispatch per entry"
    );
    assert!(audits
        .iter()
        .all(|e| e.stream_id.ends_with(projections::AUDIT_STREAM_SUFFIX)));
    let (_, slow) = got
        .iter()
        .filter(|(_, e)| e.dispatch.as_deref() == Some("CHANNEL_UPDATE"))
        .find(|(_, e)| e.data["rate_limit_per_user"] == 10)
        .expect("CHANNEL_UPDATE with slowmode");
    assert_eq!(slow.channel_id, Some(c.general.get()));

    // Wire shapes.
    insta::assert_json_snapshot!("role", roles[2], { ".id" => id() });
    insta::assert_json_snapshot!("member_moderated", carol, {
        ".user.id" => id(), ".joined_at" => ts(), ".roles[]" => id(),
        ".communication_disabled_until" => ts(),
    });
    insta::assert_json_snapshot!("ban", bans[0], { ".user.id" => id() });
    insta::assert_json_snapshot!("channel_moderated", general, {
        ".id" => id(), ".guild_id" => id(), ".last_message_id" => id(),
        ".permission_overwrites[].id" => id(),
    });
    let member_update = find("GUILD_MEMBER_UPDATE")
        .into_iter()
        .find(|e| e.data["nick"] == "Caz")
        .unwrap();
    insta::assert_json_snapshot!("dispatch_guild_member_update", member_update.data, {
        ".guild_id" => id(), ".user.id" => id(), ".joined_at" => ts(), ".roles[]" => id(),
        ".communication_disabled_until" => ts(),
    });
    insta::assert_json_snapshot!("dispatch_guild_role_create", find("GUILD_ROLE_CREATE")[0].data, {
        ".guild_id" => id(), ".role.id" => id(),
    });
    insta::assert_json_snapshot!("dispatch_guild_role_delete", find("GUILD_ROLE_DELETE")[0].data, {
        ".guild_id" => id(), ".role_id" => id(),
    });
    insta::assert_json_snapshot!("dispatch_guild_member_remove", find("GUILD_MEMBER_REMOVE")[0].data, {
        ".guild_id" => id(), ".user.id" => id(),
    });
    insta::assert_json_snapshot!("dispatch_guild_ban_add", find("GUILD_BAN_ADD")[0].data, {
        ".guild_id" => id(), ".user.id" => id(),
    });
    insta::assert_json_snapshot!("dispatch_channel_update", slow.data, {
        ".id" => id(), ".guild_id" => id(), ".last_message_id" => id(),
        ".permission_overwrites[].id" => id(),
    });
    let kick_dispatch = audits.iter().find(|e| e.data["action_type"] == 20).unwrap();
    insta::assert_json_snapshot!("dispatch_guild_audit_log_entry_create", kick_dispatch.data, {
        ".id" => id(), ".guild_id" => id(), ".user_id" => id(), ".target_id" => id(),
    });
    let role_update = log
        .audit_log_entries
        .iter()
        .find(|e| e.action_type == 25)
        .unwrap();
    insta::assert_json_snapshot!("audit_member_role_update", role_update, {
        ".id" => id(), ".user_id" => id(), ".target_id" => id(),
        ".changes[].new_value[].id" => id(),
    });
    // Updates record what changed, old and new: Helpers' colour ("greener"), #general's
    // topic (unset before, so no old value) and slowmode.
    let role_update = log
        .audit_log_entries
        .iter()
        .find(|e| e.action_type == 31)
        .unwrap();
    assert_eq!(
        serde_json::to_value(&role_update.changes).unwrap(),
        serde_json::json!([{ "key": "color", "old_value": 0, "new_value": 0x2ecc71 }])
    );
    assert_eq!(role_update.reason.as_deref(), Some("greener"));
    let channel_update = log
        .audit_log_entries
        .iter()
        .find(|e| e.action_type == 11)
        .unwrap();
    assert_eq!(
        serde_json::to_value(&channel_update.changes).unwrap(),
        serde_json::json!([
            { "key": "topic", "new_value": "be nice" },
            { "key": "rate_limit_per_user", "old_value": 0, "new_value": 10 },
        ])
    );
    let overwrite_update = log
        .audit_log_entries
        .iter()
        .find(|e| e.action_type == 14)
        .unwrap();
    insta::assert_json_snapshot!("audit_overwrite_update", overwrite_update, {
        ".id" => id(), ".user_id" => id(), ".target_id" => id(), ".options.id" => id(),
    });
    p.shutdown().await;
}

/// The runner's and the publisher's transactions do not wait for PostgreSQL's WAL flush
/// (the log replays them); every other write transaction (a rebuild's swap) does. Both
/// commit what they wrote.
async fn only_replayable_transactions_skip_the_commit_flush(backend: Backend) {
    let e = env(backend).await;
    let mut conn = e.db.pool.acquire().await.unwrap();
    let mut tx = e.db.begin_replayable(&mut conn).await.unwrap();
    if backend == Backend::Postgres {
        assert_eq!(synchronous_commit(&mut tx).await, "off");
    }
    sqlx::query("UPDATE projection_checkpoints SET position = position WHERE name = 'read_models'")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    drop(conn);
    let mut tx = e.db.begin_write().await.unwrap();
    if backend == Backend::Postgres {
        assert_eq!(
            synchronous_commit(&mut tx).await,
            "on",
            "SET LOCAL must not outlive its transaction"
        );
    }
    tx.rollback().await.unwrap();
}

async fn synchronous_commit(tx: &mut sqlx::Transaction<'_, sqlx::Any>) -> String {
    use sqlx::Row;
    sqlx::query("SHOW synchronous_commit")
        .fetch_one(&mut **tx)
        .await
        .unwrap()
        .get::<String, _>(0)
}

/// The in-process bus with a switch: while it is down, publishing fails (or, stalling,
/// waits until it is up again), as NATS does while it is unreachable (an error, or a
/// full client buffer).
struct FlakyBus {
    inner: InProcessBus,
    down: tokio::sync::watch::Sender<bool>,
    stall: bool,
}

#[async_trait::async_trait]
impl Bus for FlakyBus {
    async fn publish(&self, subject: &str, payload: bytes::Bytes) -> Result<(), bus::BusError> {
        if *self.down.borrow() {
            if !self.stall {
                return Err(bus::BusError::Publish {
                    subject: subject.to_owned(),
                    source: "the bus is down".into(),
                });
            }
            let mut up = self.down.subscribe();
            let _ = up.wait_for(|down| !*down).await;
        }
        self.inner.publish(subject, payload).await
    }

    async fn subscribe(&self, pattern: &str) -> Result<bus::BusSubscription, bus::BusError> {
        self.inner.subscribe(pattern).await
    }

    async fn flush(&self) {}
}

async fn the_read_models_go_on_while_the_bus_fails_and_everything_is_published_once_it_is_back(
    backend: Backend,
) {
    read_models_do_not_wait_for_the_bus(backend, false).await;
}

/// PostgreSQL only: the bus that can stall (NATS, with a full client buffer) runs only
/// with PostgreSQL, and on SQLite the publisher's transaction holds the database's only
/// write lock while it publishes (the in-process bus never blocks).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_read_models_go_on_while_the_bus_stalls_and_everything_is_published_once_it_moves() {
    read_models_do_not_wait_for_the_bus(Backend::Postgres, true).await;
}

/// Given projections that publish, when the bus goes down, then the read models still
/// reach every event and the publisher's checkpoint stays behind; when the bus is back,
/// every event is published and the checkpoint catches up, without a new event to wake
/// it.
async fn read_models_do_not_wait_for_the_bus(backend: Backend, stall: bool) {
    let e = env(backend).await;
    let inner = InProcessBus::default();
    let mut sub = inner.subscribe("chorus.>").await.unwrap();
    let (down, _) = tokio::sync::watch::channel(false);
    let bus = Arc::new(FlakyBus { inner, down, stall });
    let p = Projections::start(e.store.clone(), e.db.clone(), Some(bus.clone()))
        .await
        .unwrap();
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    publisher_reaches(&e.db, w.position).await;
    let before_outage = w.position;

    bus.down.send_replace(true);
    for i in 0..5 {
        w.send(c.general, c.alice, &format!("while down {i}"), None)
            .await;
    }
    assert!(
        p.wait_for(w.position, WAIT).await,
        "the read models reach every event while the bus is down"
    );
    let page = queries::messages(&e.db, c.general, MessageAnchor::Latest, 1)
        .await
        .unwrap();
    assert_eq!(page[0].content, "while down 4");
    let behind = e.db.checkpoint(projections::PUBLISHER).await.unwrap();
    assert!(
        (before_outage..w.position).contains(&behind),
        "the publisher's checkpoint waits below the unpublished events: {behind}"
    );

    bus.down.send_replace(false);
    let got = collect_until(&mut sub, w.position).await;
    let mut positions: Vec<u64> = got.iter().map(|(_, e)| e.position).collect();
    positions.sort_unstable();
    positions.dedup();
    assert_eq!(
        positions,
        (1..=w.position).collect::<Vec<_>>(),
        "every event published"
    );
    publisher_reaches(&e.db, w.position).await;

    // And publishing goes on: a new event is published.
    w.send(c.general, c.bob, "after", None).await;
    let got = collect_until(&mut sub, w.position).await;
    assert!(got.iter().any(|(_, e)| e.data["content"] == "after"));
    publisher_reaches(&e.db, w.position).await;
    p.shutdown().await;
}

/// Given events logged before projections ever ran, when they start with a bus, then the
/// publisher (created at the read models' checkpoint, 0) publishes every one of them
/// exactly once, in log order, while the runner applies them, and its checkpoint reaches
/// the read models'; the next event is published too.
async fn a_backlog_found_at_start_is_published_once_and_in_order(backend: Backend) {
    let e = env(backend).await;
    let mut w = World::new(e.store.clone());
    let c = community(&mut w).await;
    for i in 0..100 {
        w.send(c.general, c.bob, &format!("backlog {i}"), None)
            .await;
    }
    let backlog = w.position;
    assert!(backlog > 100);
    let bus = InProcessBus::default();
    let mut sub = bus.subscribe("chorus.>").await.unwrap();
    let p = Projections::start(e.store.clone(), e.db.clone(), Some(Arc::new(bus.clone())))
        .await
        .unwrap();
    let got = collect_until(&mut sub, backlog).await;
    assert_every_event_once_in_order(&got, backlog);

    w.send(c.general, c.alice, "live", None).await;
    let got = collect_until(&mut sub, w.position).await;
    assert_eq!(got.len(), 1, "only the new event: {got:?}");
    assert_eq!(got[0].1.data["content"], "live");
    assert!(p.wait_for(w.position, WAIT).await);
    publisher_reaches(&e.db, w.position).await;
    p.shutdown().await;
}

/// Waits until the publisher's checkpoint reaches `position`.
async fn publisher_reaches(db: &ReadDb, position: u64) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while db.checkpoint(projections::PUBLISHER).await.unwrap() < position {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the publisher's checkpoint reaches {position}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `got` holds every event from position 1 to `last`, in log order, and no envelope twice
/// (an event may have several envelopes, on different subjects).
fn assert_every_event_once_in_order(got: &[(String, Envelope)], last: u64) {
    let positions: Vec<u64> = got.iter().map(|(_, e)| e.position).collect();
    assert!(
        positions.windows(2).all(|w| w[0] <= w[1]),
        "positions never go back"
    );
    let mut distinct = positions.clone();
    distinct.dedup();
    assert_eq!(
        distinct,
        (1..=last).collect::<Vec<_>>(),
        "every event published"
    );
    let mut keys: Vec<_> = got
        .iter()
        .map(|(s, e)| (e.stream_id.clone(), e.revision, s.clone()))
        .collect();
    let n = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), n, "nothing published twice");
}
