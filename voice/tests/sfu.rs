//! The SFU over real UDP on 127.0.0.1 with real WebRTC peers (str0m clients: ICE, DTLS,
//! SRTP): each hears exactly the others, server mute and deafen act at once, leaving and
//! going silent remove a participant and its consumers.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use voice::client::{ClientPeer, Swarm};
use voice::server::{VoiceConfig, VoiceHandle};
use voice::sfu::{LeaveReason, SfuEvent};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const ROOM: u64 = 900;

async fn server(silence: Duration) -> VoiceHandle {
    let mut config = VoiceConfig::new((LOCALHOST, 0).into());
    config.silence_timeout = silence;
    VoiceHandle::start(config)
        .await
        .expect("voice server starts")
}

/// Join `users` to ROOM, each with `slots` receive m-lines, and drive them.
async fn join_all(voice: &VoiceHandle, users: &[u64], slots: usize) -> Swarm {
    let mut peers = Vec::new();
    for &u in users {
        let (mut peer, offer) = ClientPeer::new(u, LOCALHOST, slots).expect("peer");
        let answer = voice
            .join(ROOM, u, offer)
            .await
            .expect("running")
            .expect("offer accepted");
        peer.accept_answer(&answer).expect("answer accepted");
        peers.push(peer);
    }
    Swarm::start(peers)
}

async fn eventually(
    swarm: &Swarm,
    timeout: Duration,
    what: &str,
    f: impl Fn(&[ClientPeer]) -> bool,
) {
    let end = Instant::now() + timeout;
    loop {
        if f(&swarm.peers()) {
            return;
        }
        if Instant::now() > end {
            let peers = swarm.peers();
            let state: Vec<_> = peers
                .iter()
                .map(|p| {
                    (
                        p.user,
                        p.connected,
                        p.sent,
                        p.received
                            .iter()
                            .map(|(k, v)| (*k, v.frames))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            panic!("timed out waiting for {what}: {state:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_peers_each_hear_exactly_the_other_two_and_never_themselves() {
    let voice = server(Duration::from_secs(30)).await;
    let users = [11, 22, 33];
    let swarm = join_all(&voice, &users, 2).await;

    eventually(
        &swarm,
        Duration::from_secs(10),
        "every peer to hear both others 25 times",
        |peers| {
            peers.iter().all(|p| {
                users
                    .iter()
                    .filter(|u| **u != p.user)
                    .all(|u| p.frames_from(*u) >= 25)
            })
        },
    )
    .await;

    for p in swarm.peers().iter() {
        let mut others: Vec<u64> = users.iter().copied().filter(|u| *u != p.user).collect();
        others.sort_unstable();
        assert_eq!(
            p.heard(),
            others,
            "peer {} hears exactly the other two",
            p.user
        );
        assert_eq!(
            p.frames_from(p.user),
            0,
            "peer {} never hears itself",
            p.user
        );
        assert_eq!(p.garbage, 0);
        // The speakers' RFC 6464 audio level (-20 dBov) is forwarded with their packets.
        for o in &others {
            assert_eq!(p.received[o].level, Some(-20), "level of {o} at {}", p.user);
            assert_eq!(
                p.received[o].late, 0,
                "no duplicates or reordering on loopback"
            );
        }
        // Each other speaker arrives on one m-line of its own.
        let a = &p.received[&others[0]].mids;
        let b = &p.received[&others[1]].mids;
        assert_eq!((a.len(), b.len()), (1, 1));
        assert_ne!(a, b);
    }
    let room = voice.inspect(ROOM).await.unwrap();
    assert_eq!(room.len(), 3);
    for p in &room {
        assert!(p.connected);
        assert_eq!(
            p.consumers.len(),
            2,
            "one consumer per other participant: {p:?}"
        );
        assert!(p.consumers.iter().all(|(speaker, _, _)| *speaker != p.user));
        assert!(p.produced > 0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_mute_stops_a_stream_within_100_ms_and_deafen_stops_what_one_hears() {
    let voice = server(Duration::from_secs(30)).await;
    let users = [1, 2, 3];
    let swarm = join_all(&voice, &users, 2).await;
    eventually(&swarm, Duration::from_secs(10), "media flowing", |peers| {
        peers
            .iter()
            .all(|p| p.heard().len() == 2 && p.received.values().all(|r| r.frames >= 10))
    })
    .await;

    let muted_at = Instant::now();
    voice.set_server_mute(ROOM, 1, true);
    tokio::time::sleep(Duration::from_millis(600)).await;
    {
        let peers = swarm.peers();
        for p in peers.iter().filter(|p| p.user != 1) {
            let last = p.received[&1].last.expect("heard 1 before the mute");
            assert!(
                last <= muted_at + Duration::from_millis(100),
                "peer {} still heard 1 {:?} after the mute",
                p.user,
                last - muted_at
            );
            let other = if p.user == 2 { 3 } else { 2 };
            assert!(
                p.received[&other].last.unwrap() > muted_at + Duration::from_millis(400),
                "the others still flow"
            );
        }
    }
    let before: u64 = swarm.peers().iter().map(|p| p.frames_from(1)).sum();
    voice.set_server_mute(ROOM, 1, false);
    eventually(
        &swarm,
        Duration::from_secs(3),
        "unmuted stream to flow again",
        |peers| peers.iter().map(|p| p.frames_from(1)).sum::<u64>() > before + 10,
    )
    .await;

    // Deafen 2: it hears nobody, the others still hear it.
    let deafened_at = Instant::now();
    voice.set_server_deaf(ROOM, 2, true);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let peers = swarm.peers();
    let two = peers.iter().find(|p| p.user == 2).unwrap();
    for r in two.received.values() {
        assert!(
            r.last.unwrap() <= deafened_at + Duration::from_millis(100),
            "2 is deaf"
        );
    }
    let three = peers.iter().find(|p| p.user == 3).unwrap();
    assert!(three.received[&2].last.unwrap() > deafened_at + Duration::from_millis(300));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_removes_the_consumers_and_a_late_joiner_gets_the_freed_slot() {
    let voice = server(Duration::from_secs(30)).await;
    let mut events = voice.subscribe();
    // Two slots each, four users: the fourth waits for a slot until someone leaves.
    let swarm = join_all(&voice, &[1, 2, 3], 2).await;
    eventually(&swarm, Duration::from_secs(10), "media flowing", |peers| {
        peers.iter().all(|p| p.heard().len() == 2)
    })
    .await;

    voice.leave(ROOM, 3);
    let left_at = Instant::now();
    let room = voice.inspect(ROOM).await.unwrap();
    assert_eq!(room.iter().map(|p| p.user).collect::<Vec<_>>(), vec![1, 2]);
    for p in &room {
        assert_eq!(
            p.consumers.len(),
            1,
            "only the other remaining participant: {p:?}"
        );
        assert!(p.consumers.iter().all(|(s, _, _)| *s != 3));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    for p in swarm.peers().iter().filter(|p| p.user != 3) {
        assert!(p.received[&3].last.unwrap() <= left_at + Duration::from_millis(100));
    }
    let mut saw = (false, false);
    while let Ok(e) = events.try_recv() {
        match e {
            SfuEvent::Left {
                room: ROOM,
                user: 3,
                reason: LeaveReason::Removed,
            } => saw.0 = true,
            SfuEvent::ConsumerClosed {
                room: ROOM,
                speaker: 3,
                ..
            } => saw.1 = true,
            _ => {}
        }
    }
    assert_eq!(saw, (true, true), "Left and ConsumerClosed were reported");

    // A late joiner takes the slots 3 freed: 1 and 2 hear 4, and 4 hears them.
    let (mut peer, offer) = ClientPeer::new(4, LOCALHOST, 2).unwrap();
    let answer = voice.join(ROOM, 4, offer).await.unwrap().unwrap();
    peer.accept_answer(&answer).unwrap();
    swarm.peers().push(peer);
    eventually(
        &swarm,
        Duration::from_secs(10),
        "4 to hear and be heard",
        |peers| {
            peers.iter().filter(|p| p.user != 3).all(|p| {
                [1, 2, 4]
                    .iter()
                    .filter(|u| **u != p.user)
                    .all(|u| p.frames_from(*u) >= 5)
            })
        },
    )
    .await;
    let four = swarm
        .peers()
        .iter()
        .find(|p| p.user == 4)
        .map(|p| p.heard())
        .unwrap();
    assert_eq!(four, vec![1, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_participant_that_goes_silent_is_evicted_after_the_timeout() {
    let voice = server(Duration::from_secs(1)).await;
    let mut events = voice.subscribe();
    let swarm = join_all(&voice, &[5, 6], 1).await;
    eventually(&swarm, Duration::from_secs(10), "media flowing", |peers| {
        peers.iter().all(|p| p.heard().len() == 1)
    })
    .await;
    swarm
        .peers()
        .iter_mut()
        .find(|p| p.user == 6)
        .unwrap()
        .close();
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let e = tokio::time::timeout_at(end.into(), events.recv())
            .await
            .expect("6 evicted within 5 s")
            .unwrap();
        if let SfuEvent::Left {
            user: 6, reason, ..
        } = e
        {
            assert!(
                matches!(reason, LeaveReason::Timeout | LeaveReason::TransportClosed),
                "{reason:?}"
            );
            break;
        }
    }
    let room = voice.inspect(ROOM).await.unwrap();
    assert_eq!(room.len(), 1);
    assert!(room[0].consumers.is_empty());
}

#[tokio::test]
async fn a_malformed_offer_is_rejected_and_the_server_keeps_running() {
    let voice = server(Duration::from_secs(30)).await;
    let r = voice
        .join(ROOM, 1, "v=0\r\nthis is not sdp".into())
        .await
        .unwrap();
    assert!(r.is_err());
    // An offer repeating an m-line's mid would put two speakers on one m-line.
    let (_, offer) = ClientPeer::new(1, LOCALHOST, 2).unwrap();
    let mids: Vec<&str> = offer
        .lines()
        .filter_map(|l| l.strip_prefix("a=mid:"))
        .collect();
    assert_eq!(mids.len(), 3);
    let repeated = offer.replace(&format!("a=mid:{}", mids[2]), &format!("a=mid:{}", mids[1]));
    let r = voice.join(ROOM, 1, repeated).await.unwrap();
    assert!(
        matches!(r, Err(voice::sfu::JoinError::Rejected(ref e)) if e.contains("mid")),
        "{r:?}"
    );
    assert!(voice.inspect(ROOM).await.unwrap().is_empty());
    // The server still takes a good offer.
    let (_, offer) = ClientPeer::new(1, LOCALHOST, 2).unwrap();
    assert!(voice.join(ROOM, 1, offer).await.unwrap().is_ok());
}
