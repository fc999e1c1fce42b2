//! The in-process bus: the shared contract, plus buffering, dropping and unsubscribing.

mod common;

use std::sync::Arc;
use std::time::Duration;

use bus::{subjects, Bus, InProcessBus};
use bytes::Bytes;
use common::recv;

fn pair() -> (Arc<dyn Bus>, Arc<dyn Bus>) {
    let bus = InProcessBus::new();
    (Arc::new(bus.clone()), Arc::new(bus))
}

#[tokio::test]
async fn messages_arrive_in_publish_order() {
    let (a, b) = pair();
    common::messages_arrive_in_publish_order(a, b).await;
}

#[tokio::test]
async fn wildcards_fan_out_to_every_matching_subscription() {
    let (a, b) = pair();
    common::wildcards_fan_out_to_every_matching_subscription(a, b).await;
}

#[tokio::test]
async fn two_subscriptions_to_one_pattern_both_receive() {
    let (a, b) = pair();
    common::two_subscriptions_to_one_pattern_both_receive(a, b).await;
}

#[tokio::test]
async fn envelopes_cross_the_bus_and_dedup_sorts_them() {
    let (a, b) = pair();
    common::envelopes_cross_the_bus_and_dedup_sorts_them(a, b).await;
}

#[tokio::test]
async fn invalid_subjects_and_patterns_are_rejected() {
    let (a, _) = pair();
    common::invalid_subjects_and_patterns_are_rejected(a).await;
}

#[tokio::test]
async fn dropping_a_subscription_unsubscribes() {
    let bus = InProcessBus::new();
    let first = bus.subscribe("chorus.guild.1.>").await.unwrap();
    let mut second = bus.subscribe("chorus.guild.1.>").await.unwrap();
    let third = bus.subscribe("chorus.user.*.ready").await.unwrap();
    assert_eq!(bus.subscription_count(), 3);

    drop(first);
    assert_eq!(bus.subscription_count(), 2);
    bus.publish("chorus.guild.1.guild_update", Bytes::from_static(b"a"))
        .await
        .unwrap();
    assert_eq!(recv(&mut second).await.payload, "a");

    drop(second);
    drop(third);
    assert_eq!(bus.subscription_count(), 0);
    // Publishing with nobody listening is fine.
    bus.publish("chorus.guild.1.guild_update", Bytes::new())
        .await
        .unwrap();
    assert_eq!(bus.dropped_messages(), 0);
}

#[tokio::test]
async fn a_slow_subscriber_does_not_block_publishers_or_other_subscribers() {
    let bus = InProcessBus::with_capacity(4);
    let mut slow = bus.subscribe("chorus.channel.9.>").await.unwrap();
    let mut fast = bus.subscribe("chorus.channel.9.>").await.unwrap();

    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..100u32 {
                bus.publish(
                    "chorus.channel.9.message_create",
                    Bytes::from(i.to_string()),
                )
                .await
                .unwrap();
                // Let the fast subscriber keep up.
                tokio::task::yield_now().await;
            }
        })
    };
    for i in 0..100u32 {
        assert_eq!(recv(&mut fast).await.payload, i.to_string());
    }
    tokio::time::timeout(Duration::from_secs(5), publisher)
        .await
        .expect("the publisher was blocked by the slow subscriber")
        .unwrap();

    // The slow one kept the first messages that fit its buffer; the rest were dropped
    // and counted, and it can tell by the gap.
    for i in 0..4u32 {
        assert_eq!(recv(&mut slow).await.payload, i.to_string());
    }
    assert_eq!(bus.dropped_messages(), 96);
    // Once it has caught up it receives again.
    bus.publish(
        "chorus.channel.9.message_create",
        Bytes::from_static(b"later"),
    )
    .await
    .unwrap();
    assert_eq!(recv(&mut slow).await.payload, "later");
}

#[tokio::test]
async fn a_full_buffer_never_blocks_a_publisher_with_no_reader_at_all() {
    let bus = InProcessBus::with_capacity(1);
    let _never_read = bus.subscribe(">").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), async {
        for _ in 0..10_000 {
            bus.publish("chorus.user.1.presence_update", Bytes::new())
                .await
                .unwrap();
        }
    })
    .await
    .expect("publish blocked on a full subscriber");
    assert_eq!(bus.dropped_messages(), 9_999);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_publishers_messages_stay_in_order_under_concurrency() {
    const PUBLISHERS: u32 = 8;
    const MESSAGES: u32 = 500;
    let bus = InProcessBus::with_capacity((PUBLISHERS * MESSAGES) as usize);
    let mut subs = Vec::new();
    for pattern in [
        "chorus.guild.7.>",
        "chorus.guild.*.channel.*.message_create",
        ">",
    ] {
        subs.push(bus.subscribe(pattern).await.unwrap());
    }
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            let bus = bus.clone();
            tokio::spawn(async move {
                let subject = subjects::guild_channel(7, u64::from(p), "message_create");
                for i in 0..MESSAGES {
                    bus.publish(&subject, Bytes::from(format!("{p}:{i}")))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    for sub in &mut subs {
        let mut next = vec![0u32; PUBLISHERS as usize];
        for _ in 0..PUBLISHERS * MESSAGES {
            let message = recv(sub).await;
            let text = std::str::from_utf8(&message.payload).unwrap();
            let (p, i) = text.split_once(':').unwrap();
            let (p, i): (usize, u32) = (p.parse().unwrap(), i.parse().unwrap());
            assert_eq!(
                i,
                next[p],
                "publisher {p} out of order on {:?}",
                sub.pattern()
            );
            next[p] += 1;
        }
    }
    assert_eq!(bus.dropped_messages(), 0);
}

#[tokio::test]
async fn subscriptions_end_when_the_bus_is_gone() {
    let bus = InProcessBus::new();
    let mut sub = bus.subscribe("chorus.user.1.>").await.unwrap();
    bus.publish("chorus.user.1.ready", Bytes::from_static(b"last"))
        .await
        .unwrap();
    drop(bus);
    assert_eq!(recv(&mut sub).await.payload, "last");
    assert_eq!(sub.next().await, None);
}

#[tokio::test]
async fn a_subscription_is_also_a_stream() {
    use futures::StreamExt;
    let bus = InProcessBus::new();
    let sub = bus.subscribe("a.*").await.unwrap();
    for s in ["a.1", "b.1", "a.2", "a.3.x", "a.3"] {
        bus.publish(s, Bytes::new()).await.unwrap();
    }
    drop(bus);
    let subjects: Vec<String> = sub.map(|m| m.subject).collect().await;
    assert_eq!(subjects, ["a.1", "a.2", "a.3"]);
}
