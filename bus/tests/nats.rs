//! NatsBus against a real NATS server: two clients play two nodes.
//!
//! The server is at nats://127.0.0.1:4222 unless CHORUS_TEST_NATS_URL says otherwise.
//! These tests fail, never skip, when it is unreachable.

mod common;

use std::sync::Arc;

use bus::{subjects, Bus, BusError, NatsBus};
use bytes::Bytes;
use common::recv;

const START_HINT: &str = "start-stop-daemon --start --oknodo --background \
    --exec /usr/sbin/nats-server -- -a 127.0.0.1 -p 4222 -js -sd /var/lib/nats-server";

fn nats_url() -> String {
    std::env::var("CHORUS_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

async fn node() -> NatsBus {
    let url = nats_url();
    match NatsBus::connect(&url).await {
        Ok(bus) => bus,
        Err(err) => panic!(
            "\n\nNATS integration tests need a NATS server at {url} \
             (set CHORUS_TEST_NATS_URL to use another), but connecting failed:\n  {err}\n\
             Start one with:\n  {START_HINT}\n\n"
        ),
    }
}

async fn two_nodes() -> (Arc<dyn Bus>, Arc<dyn Bus>) {
    (Arc::new(node().await), Arc::new(node().await))
}

#[tokio::test]
async fn messages_arrive_in_publish_order() {
    let (a, b) = two_nodes().await;
    common::messages_arrive_in_publish_order(a, b).await;
}

#[tokio::test]
async fn wildcards_fan_out_to_every_matching_subscription() {
    let (a, b) = two_nodes().await;
    common::wildcards_fan_out_to_every_matching_subscription(a, b).await;
}

#[tokio::test]
async fn two_subscriptions_to_one_pattern_both_receive() {
    let (a, b) = two_nodes().await;
    common::two_subscriptions_to_one_pattern_both_receive(a, b).await;
}

#[tokio::test]
async fn envelopes_cross_the_bus_and_dedup_sorts_them() {
    let (a, b) = two_nodes().await;
    common::envelopes_cross_the_bus_and_dedup_sorts_them(a, b).await;
}

#[tokio::test]
async fn invalid_subjects_and_patterns_are_rejected() {
    let (a, _) = two_nodes().await;
    common::invalid_subjects_and_patterns_are_rejected(a).await;
}

#[tokio::test]
async fn one_publisher_reaches_several_nodes_including_itself() {
    let (a, b) = (node().await, node().await);
    let c = node().await;
    let guild = common::unique_id();
    let mut subs = Vec::new();
    for bus in [&a, &b, &c] {
        subs.push(bus.subscribe(&subjects::guild_all(guild)).await.unwrap());
        bus.flush().await;
    }
    let subject = subjects::guild(guild, "guild_role_create");
    for i in 0..50 {
        a.publish(&subject, Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    a.flush().await;
    for sub in &mut subs {
        for i in 0..50 {
            let message = recv(sub).await;
            assert_eq!(message.subject, subject);
            assert_eq!(message.payload, i.to_string());
        }
    }
}

#[tokio::test]
async fn a_dropped_subscription_stops_receiving_and_others_continue() {
    let (a, b) = (node().await, node().await);
    let user = common::unique_id();
    let dropped = b.subscribe(&subjects::user_all(user)).await.unwrap();
    let mut kept = b.subscribe(&subjects::user_all(user)).await.unwrap();
    drop(dropped);
    b.flush().await;
    a.publish(&subjects::user(user, "ready"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    a.flush().await;
    assert_eq!(recv(&mut kept).await.payload, "1");
}

#[tokio::test]
async fn try_flush_confirms_a_round_trip() {
    let bus = node().await;
    bus.try_flush().await.unwrap();
    bus.try_flush().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_connect_error() {
    // Port 1 on loopback: nothing listens there, so the connection is refused at once.
    let err = NatsBus::connect("nats://127.0.0.1:1").await.unwrap_err();
    assert!(matches!(err, BusError::Connect { .. }), "{err}");
    let message = err.to_string();
    eprintln!("connect error reads: {message}");
    assert!(
        message.contains("cannot connect to NATS at nats://127.0.0.1:1"),
        "{message}"
    );

    let err = NatsBus::connect("definitely not a url").await.unwrap_err();
    assert!(matches!(err, BusError::Connect { .. }), "{err}");
    eprintln!("connect error reads: {err}");
}
