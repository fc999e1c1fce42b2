//! The behaviour every `Bus` backend must show, run against each of them.
//!
//! Each check takes two handles, like two nodes: `publisher` publishes and `subscriber`
//! subscribes. For the in-process bus both are the same bus.

#![allow(dead_code)] // each test binary uses its own subset

use std::sync::Arc;
use std::time::Duration;

use bus::{subjects, Bus, BusError, BusMessage, BusSubscription, Dedup, Envelope, Observation};
use bytes::Bytes;

/// How long a test waits for a message that should arrive.
pub const RECEIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh id, so concurrent test runs sharing one NATS server never see each other.
pub fn unique_id() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// The next message, or a panic naming the pattern if none arrives in time.
pub async fn recv(sub: &mut BusSubscription) -> BusMessage {
    match tokio::time::timeout(RECEIVE_TIMEOUT, sub.next()).await {
        Ok(Some(message)) => message,
        Ok(None) => panic!("subscription {:?} ended unexpectedly", sub.pattern()),
        Err(_) => panic!(
            "no message on {:?} within {RECEIVE_TIMEOUT:?}",
            sub.pattern()
        ),
    }
}

fn text(message: &BusMessage) -> &str {
    std::str::from_utf8(&message.payload).expect("test payloads are UTF-8")
}

pub async fn messages_arrive_in_publish_order(publisher: Arc<dyn Bus>, subscriber: Arc<dyn Bus>) {
    let (guild, channel) = (unique_id(), unique_id());
    let mut sub = subscriber
        .subscribe(&subjects::guild_all(guild))
        .await
        .unwrap();
    subscriber.flush().await;

    let subject = subjects::guild_channel(guild, channel, "message_create");
    for i in 0..500 {
        publisher
            .publish(&subject, Bytes::from(i.to_string()))
            .await
            .unwrap();
    }
    publisher.flush().await;

    for i in 0..500 {
        let message = recv(&mut sub).await;
        assert_eq!(message.subject, subject);
        assert_eq!(text(&message), i.to_string(), "message {i} out of order");
    }
}

pub async fn wildcards_fan_out_to_every_matching_subscription(
    publisher: Arc<dyn Bus>,
    subscriber: Arc<dyn Bus>,
) {
    let (guild, other_guild, channel, user) = (unique_id(), unique_id(), unique_id(), unique_id());
    let guild_event = subjects::guild(guild, "guild_member_add");
    let channel_create = subjects::guild_channel(guild, channel, "message_create");
    let channel_delete = subjects::guild_channel(guild, channel, "message_delete");
    let other_guild_event = subjects::guild(other_guild, "guild_update");
    let user_event = subjects::user(user, "relationship_add");
    // The last message every subscription below matches, so "received nothing else" can
    // be checked without waiting: per-publisher order puts it after everything else.
    let sentinel_pattern = format!("chorus.guild.{guild}.channel.{channel}.sentinel");

    let mut all_of_guild = subscriber
        .subscribe(&subjects::guild_all(guild))
        .await
        .unwrap();
    let mut creates_in_any_channel = subscriber
        .subscribe(&format!("chorus.guild.{guild}.channel.*.message_create"))
        .await
        .unwrap();
    let mut exact = subscriber.subscribe(&channel_delete).await.unwrap();
    let mut one_channel = subscriber
        .subscribe(&subjects::guild_channel_all(guild, channel))
        .await
        .unwrap();
    let mut other_guild_only = subscriber
        .subscribe(&subjects::guild_all(other_guild))
        .await
        .unwrap();
    let mut user_only = subscriber
        .subscribe(&subjects::user_all(user))
        .await
        .unwrap();
    let mut sentinel_only = subscriber.subscribe(&sentinel_pattern).await.unwrap();
    subscriber.flush().await;

    for subject in [
        &guild_event,
        &channel_create,
        &channel_delete,
        &other_guild_event,
        &user_event,
        &sentinel_pattern,
    ] {
        publisher
            .publish(subject, Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    // Something no subscription matches, then the sentinel again for the subscriptions
    // that did not match the first one.
    publisher
        .publish(&subjects::channel(channel, "message_create"), Bytes::new())
        .await
        .unwrap();
    publisher
        .publish(&subjects::guild(other_guild, "sentinel"), Bytes::new())
        .await
        .unwrap();
    publisher
        .publish(&subjects::user(user, "sentinel"), Bytes::new())
        .await
        .unwrap();
    publisher.flush().await;

    async fn expect(sub: &mut BusSubscription, subjects: &[&str]) {
        for expected in subjects {
            assert_eq!(recv(sub).await.subject, *expected, "on {:?}", sub.pattern());
        }
    }
    expect(
        &mut all_of_guild,
        &[
            &guild_event,
            &channel_create,
            &channel_delete,
            &sentinel_pattern,
        ],
    )
    .await;
    expect(&mut creates_in_any_channel, &[&channel_create]).await;
    expect(&mut exact, &[&channel_delete]).await;
    expect(
        &mut one_channel,
        &[&channel_create, &channel_delete, &sentinel_pattern],
    )
    .await;
    expect(
        &mut other_guild_only,
        &[
            &other_guild_event,
            &subjects::guild(other_guild, "sentinel"),
        ],
    )
    .await;
    expect(
        &mut user_only,
        &[&user_event, &subjects::user(user, "sentinel")],
    )
    .await;
    expect(&mut sentinel_only, &[&sentinel_pattern]).await;

    // `creates_in_any_channel` and `exact` match no sentinel: publish one more for them.
    publisher
        .publish(&channel_create, Bytes::new())
        .await
        .unwrap();
    publisher
        .publish(&channel_delete, Bytes::new())
        .await
        .unwrap();
    publisher.flush().await;
    expect(&mut creates_in_any_channel, &[&channel_create]).await;
    expect(&mut exact, &[&channel_delete]).await;
}

pub async fn two_subscriptions_to_one_pattern_both_receive(
    publisher: Arc<dyn Bus>,
    subscriber: Arc<dyn Bus>,
) {
    let user = unique_id();
    let mut first = subscriber
        .subscribe(&subjects::user_all(user))
        .await
        .unwrap();
    let mut second = subscriber
        .subscribe(&subjects::user_all(user))
        .await
        .unwrap();
    subscriber.flush().await;
    publisher
        .publish(&subjects::user(user, "ready"), Bytes::from_static(b"hello"))
        .await
        .unwrap();
    publisher.flush().await;
    assert_eq!(recv(&mut first).await.payload, "hello");
    assert_eq!(recv(&mut second).await.payload, "hello");
}

pub async fn envelopes_cross_the_bus_and_dedup_sorts_them(
    publisher: Arc<dyn Bus>,
    subscriber: Arc<dyn Bus>,
) {
    let (guild, channel) = (unique_id(), unique_id());
    let mut sub = subscriber
        .subscribe(&subjects::guild_all(guild))
        .await
        .unwrap();
    subscriber.flush().await;

    let subject = subjects::guild_channel(guild, channel, "message_create");
    let stream_id = format!("channel-{channel}");
    // Revisions as a publisher restart and a lost message would produce them.
    let revisions = [0u64, 1, 2, 1, 2, 3, 5];
    for (position, revision) in revisions.iter().enumerate() {
        let envelope = Envelope {
            stream_id: stream_id.clone(),
            revision: *revision,
            position: position as u64,
            event_type: "MessageCreated".into(),
            dispatch: Some("MESSAGE_CREATE".into()),
            guild_id: Some(guild),
            channel_id: Some(channel),
            user_ids: vec![],
            data: serde_json::json!({ "content": format!("revision {revision}") }),
        };
        publisher
            .publish(&subject, envelope.to_bytes().unwrap())
            .await
            .unwrap();
    }
    publisher.flush().await;

    let mut dedup = Dedup::default();
    let mut seen = Vec::new();
    for _ in revisions {
        let envelope = Envelope::from_bytes(&recv(&mut sub).await.payload).unwrap();
        assert_eq!(
            envelope.data["content"],
            format!("revision {}", envelope.revision)
        );
        seen.push(dedup.observe(&envelope.stream_id, envelope.revision));
    }
    use Observation::*;
    assert_eq!(
        seen,
        [
            New,
            New,
            New,
            Duplicate,
            Duplicate,
            New,
            Gap {
                missing_from: 4,
                missing_to: 4
            }
        ]
    );
}

pub async fn invalid_subjects_and_patterns_are_rejected(bus: Arc<dyn Bus>) {
    for subject in [
        "",
        "chorus..guild",
        "chorus.guild.1.>",
        "chorus.*.1",
        "a b",
        "a.",
    ] {
        let err = bus.publish(subject, Bytes::new()).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "publish {subject:?}: {err}"
        );
    }
    for pattern in ["", "chorus..guild", "chorus.>.1", "a b", ".a", "chorus.gu*"] {
        let err = bus.subscribe(pattern).await.unwrap_err();
        assert!(
            matches!(err, BusError::InvalidSubject { .. }),
            "subscribe {pattern:?}: {err}"
        );
    }
}
