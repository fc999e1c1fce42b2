//! The gateway hub drops duplicates and backfills gaps from the log, in order.

use std::sync::Arc;
use std::time::Duration;

use bus::{Bus, Envelope, InProcessBus};
use commands::{Commands, Context};
use domain::SnowflakeGenerator;
use gateway::ws::Hub;
use store::DynStore;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_drops_duplicates_and_backfills_gaps_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("chorus.db").display()
    );
    let store: DynStore = Arc::new(store::sqlite::SqliteStore::open(&url).await.unwrap());
    let db = projections::ReadDb::connect(&url).await.unwrap();
    let projections = projections::Projections::start(store.clone(), db.clone(), None)
        .await
        .unwrap();
    let commands = Commands::new(store.clone(), Arc::new(SnowflakeGenerator::new(0, 0)));

    let user = commands.register("alice", "password1", "r").await.unwrap();
    let ctx = Context::user(user.user_id, "r");
    let (guild, _) = commands.create_guild(&ctx, "Hub").await.unwrap();
    let channel = {
        let mut last = 0;
        let events = store.read_all(0, 100).await.unwrap();
        for e in &events {
            if e.event_type == "ChannelOpened" {
                last = e.data["channel_id"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        domain::ChannelId::new(last)
    };
    let mut sent = Vec::new();
    for i in 0..3 {
        sent.push(
            commands
                .send_message(&ctx, channel, &format!("m{i}"), None, false, false)
                .await
                .unwrap(),
        );
    }
    let head = store.head().await.unwrap();
    assert!(projections.wait_for(head, Duration::from_secs(10)).await);

    let events = store.read_all(0, 1000).await.unwrap();
    let rendered: Vec<(String, Envelope)> = projections::render_envelopes(&db, &events)
        .await
        .unwrap()
        .into_iter()
        .filter(|(_, e)| e.dispatch.as_deref() == Some("MESSAGE_CREATE"))
        .collect();
    assert_eq!(rendered.len(), 3);

    let bus: Arc<dyn Bus> = Arc::new(InProcessBus::new());
    let hub = Hub::new(bus.clone(), store.clone(), db.clone());
    let (_registration, rx) = hub
        .register(user.user_id.get(), &[guild.get()])
        .await
        .unwrap();
    assert_eq!(
        hub.subscription_count().await,
        2,
        "one guild and one user subscription"
    );

    // The first message, the first again (a duplicate), then the third (the second is
    // missing: a gap), then the second late.
    for i in [0usize, 0, 2, 1] {
        let (subject, env) = &rendered[i];
        bus.publish(subject, env.to_bytes().unwrap()).await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 3 {
        let d = tokio::time::timeout(Duration::from_secs(5), rx.recv())
            .await
            .expect("dispatch")
            .unwrap();
        assert_eq!(d.name, "MESSAGE_CREATE");
        let v: serde_json::Value = serde_json::from_str(&d.data).unwrap();
        got.push(v["id"].as_str().unwrap().parse::<u64>().unwrap());
    }
    let expected: Vec<u64> = sent.iter().map(|s| s.message_id.get()).collect();
    assert_eq!(got, expected, "every message once, in channel order");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), rx.recv())
            .await
            .is_err(),
        "nothing more: the duplicate and the late copy were dropped"
    );
}
