//! Voice state commands against the in-memory log: join, move, leave, the user limit and
//! moderator moves, each recorded on the guild's voice stream.

use std::sync::Arc;

use commands::{ChannelSpec, CommandError, Commands, Context, InviteSpec};
use domain::guild::ChannelKind;
use domain::values::ChannelName;
use domain::voice::{self, VoiceEvent};
use domain::{ChannelId, DomainError, DomainEvent, GuildId, SnowflakeGenerator, UserId};
use store::{Direction, DynStore};

struct World {
    c: Commands,
    store: DynStore,
    owner: UserId,
    alice: UserId,
    guild: GuildId,
    lounge: ChannelId,
    text: ChannelId,
}

async fn world() -> World {
    let store: DynStore = Arc::new(store::memory::MemoryStore::new());
    let c = Commands::new(store.clone(), Arc::new(SnowflakeGenerator::new(1, 0)));
    let owner = c
        .register("owner", "correct horse", "r")
        .await
        .unwrap()
        .user_id;
    let alice = c
        .register("alice", "correct horse", "r")
        .await
        .unwrap()
        .user_id;
    let octx = Context::user(owner, "r");
    let (guild, _) = c.create_guild(&octx, "Chorus").await.unwrap();
    let spec = |kind| ChannelSpec {
        kind,
        name: ChannelName::parse("room").unwrap(),
        parent_id: None,
        topic: None,
        nsfw: false,
        position: None,
    };
    let (lounge, _) = c
        .create_channel(&octx, guild, spec(ChannelKind::Voice))
        .await
        .unwrap();
    let (text, _) = c
        .create_channel(&octx, guild, spec(ChannelKind::Text))
        .await
        .unwrap();
    let (invite, _) = c
        .create_invite(
            &octx,
            text,
            InviteSpec {
                max_age: 0,
                max_uses: 0,
                temporary: false,
            },
        )
        .await
        .unwrap();
    c.accept_invite(&Context::user(alice, "r"), &invite.code)
        .await
        .unwrap();
    World {
        c,
        store,
        owner,
        alice,
        guild,
        lounge,
        text,
    }
}

#[tokio::test]
async fn joining_and_leaving_voice_is_recorded_on_the_guilds_voice_stream() {
    let w = world().await;
    let actx = Context::user(w.alice, "join-1");
    let joined =
        w.c.update_voice_state(&actx, w.guild, "sess-a", Some(w.lounge), false, true)
            .await
            .unwrap();
    let state = joined.state.expect("in voice");
    assert_eq!(state.channel_id, w.lounge);
    assert!(state.self_deaf && !state.self_mute);
    assert!(!joined.mute && !joined.deaf);

    // The same state again records nothing.
    let again =
        w.c.update_voice_state(&actx, w.guild, "sess-a", Some(w.lounge), false, true)
            .await
            .unwrap();
    assert!(again.events.is_empty());

    let left =
        w.c.update_voice_state(&actx, w.guild, "sess-a", None, false, false)
            .await
            .unwrap();
    assert!(left.state.is_none());
    assert!(w.c.voice_states(w.guild).await.unwrap().states.is_empty());

    // The log is the audit trail: who, where, when, with the request id.
    let events = w
        .store
        .read_stream(&voice::stream(w.guild), 1, Direction::Forwards, 10)
        .await
        .unwrap();
    assert_eq!(events.len(), 2);
    let first = VoiceEvent::from_stored(
        &events[0].event_type,
        events[0].version,
        events[0].data.clone(),
    )
    .unwrap();
    assert!(
        matches!(first, VoiceEvent::VoiceStateChanged { user_id, channel_id: Some(c), .. } if user_id == w.alice && c == w.lounge)
    );
    assert_eq!(events[0].metadata.correlation_id, "join-1");
}

#[tokio::test]
async fn text_channels_are_refused_and_the_owner_moves_and_disconnects_members() {
    let w = world().await;
    let actx = Context::user(w.alice, "r");
    let err =
        w.c.update_voice_state(&actx, w.guild, "s", Some(w.text), false, false)
            .await
            .unwrap_err();
    assert!(matches!(
        err,
        CommandError::Domain(DomainError::WrongChannelType)
    ));

    // Alice may not move the owner (no MOVE_MEMBERS); the owner may disconnect Alice.
    let octx = Context::user(w.owner, "r");
    w.c.update_voice_state(&octx, w.guild, "o", Some(w.lounge), false, false)
        .await
        .unwrap();
    w.c.update_voice_state(&actx, w.guild, "a", Some(w.lounge), false, false)
        .await
        .unwrap();
    let denied =
        w.c.move_voice_member(&actx, w.guild, w.owner, None)
            .await
            .unwrap_err();
    assert!(matches!(
        denied,
        CommandError::Domain(DomainError::MissingPermissions)
    ));
    let out =
        w.c.move_voice_member(&octx, w.guild, w.alice, None)
            .await
            .unwrap();
    assert!(out.state.is_none());
    let states = w.c.voice_states(w.guild).await.unwrap();
    assert_eq!(
        states.members_of(w.lounge).collect::<Vec<_>>(),
        vec![w.owner]
    );

    // A dead connection drops its user.
    let dropped =
        w.c.drop_voice_state(&Context::user(w.owner, "r"), w.guild, w.owner)
            .await
            .unwrap();
    assert_eq!(dropped.events.len(), 1);
    assert!(w.c.voice_states(w.guild).await.unwrap().states.is_empty());
}
