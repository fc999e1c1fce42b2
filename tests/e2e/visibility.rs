//! Nobody receives or reads what a channel they cannot view holds (design invariant 5):
//! users with different roles are connected, and the test asserts exactly who received
//! which dispatch, what each one's GUILD_CREATE and channel list show, and who may read
//! the history.

use serde_json::{json, Value};

use crate::harness::{Gateway, Server, Shape};

/// VIEW_CHANNEL's bit.
const VIEW_CHANNEL: u64 = 1 << 10;

/// The MESSAGE_CREATE contents a session receives up to (and including) `marker`.
async fn contents_until(gw: &mut Gateway, marker: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        let d = gw.next_dispatch().await;
        if d["t"] == "MESSAGE_CREATE" {
            let content = d["d"]["content"].as_str().unwrap().to_owned();
            let done = content == marker;
            seen.push(content);
            if done {
                return seen;
            }
        }
    }
}

fn channel_ids(list: &Value) -> Vec<String> {
    let mut ids: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

async fn a_private_channel_reaches_only_those_who_can_view_it(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, _) = anon.register("owner").await;
    let (staff, staff_id) = anon.register("staff").await;
    let (guest, _) = anon.register("guest").await;

    let g = owner.create_guild("Chorus").await;
    let public = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "public" })),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let private = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "private" })),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let code = owner
        .ok(
            "POST",
            &format!("/channels/{public}/invites"),
            Some(json!({})),
        )
        .await["code"]
        .as_str()
        .unwrap()
        .to_owned();
    staff.ok("POST", &format!("/invites/{code}"), None).await;
    guest.ok("POST", &format!("/invites/{code}"), None).await;

    // @everyone may not view #private; the staff role may.
    let role = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "name": "staff" })),
        )
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    owner
        .ok(
            "PUT",
            &format!("/guilds/{g}/members/{staff_id}/roles/{role}"),
            None,
        )
        .await;
    owner
        .ok(
            "PUT",
            &format!("/channels/{private}/permissions/{g}"),
            Some(json!({ "type": 0, "allow": "0", "deny": VIEW_CHANNEL.to_string() })),
        )
        .await;
    owner
        .ok(
            "PUT",
            &format!("/channels/{private}/permissions/{role}"),
            Some(json!({ "type": 0, "allow": VIEW_CHANNEL.to_string(), "deny": "0" })),
        )
        .await;

    let mut sessions = Vec::new();
    for api in [&owner, &staff, &guest] {
        sessions.push(Gateway::connect(&server.ws, api.token.as_deref().unwrap()).await);
    }
    // GUILD_CREATE and the channel list show only viewable channels.
    let all = {
        let mut v = vec![public.clone(), private.clone()];
        v.sort();
        v
    };
    for (gw, api, sees_private) in [
        (&sessions[0], &owner, true),
        (&sessions[1], &staff, true),
        (&sessions[2], &guest, false),
    ] {
        let listed = channel_ids(&api.ok("GET", &format!("/guilds/{g}/channels"), None).await);
        let created = channel_ids(&gw.guild_creates[0]["channels"]);
        assert_eq!(listed, created);
        assert_eq!(listed.contains(&private), sees_private, "{listed:?}");
        assert!(listed.contains(&public));
        if sees_private {
            for id in &all {
                assert!(listed.contains(id));
            }
        }
    }

    owner
        .ok(
            "POST",
            &format!("/channels/{private}/messages"),
            Some(json!({ "content": "secret" })),
        )
        .await;
    owner
        .ok(
            "POST",
            &format!("/channels/{public}/messages"),
            Some(json!({ "content": "hello all" })),
        )
        .await;
    let expected = [
        vec!["secret", "hello all"],
        vec!["secret", "hello all"],
        vec!["hello all"],
    ];
    for (gw, want) in sessions.iter_mut().zip(expected) {
        assert_eq!(contents_until(gw, "hello all").await, want);
    }

    // History and single channels follow the same rule, with Discord's error codes.
    let denied = guest
        .call("GET", &format!("/channels/{private}/messages"), None)
        .await;
    assert_eq!(denied.status, 403, "{denied:?}");
    assert_eq!(denied.body["code"], 50001);
    let denied = guest
        .call("GET", &format!("/channels/{private}"), None)
        .await;
    assert_eq!(denied.status, 403, "{denied:?}");
    let history = staff
        .ok("GET", &format!("/channels/{private}/messages"), None)
        .await;
    assert_eq!(history[0]["content"], "secret");

    // Taking the role away hides the channel at once, on the next request and dispatch.
    owner
        .ok(
            "DELETE",
            &format!("/guilds/{g}/members/{staff_id}/roles/{role}"),
            None,
        )
        .await;
    let denied = staff
        .call("GET", &format!("/channels/{private}/messages"), None)
        .await;
    assert_eq!(denied.status, 403, "{denied:?}");
    owner
        .ok(
            "POST",
            &format!("/channels/{private}/messages"),
            Some(json!({ "content": "later" })),
        )
        .await;
    owner
        .ok(
            "POST",
            &format!("/channels/{public}/messages"),
            Some(json!({ "content": "bye" })),
        )
        .await;
    assert_eq!(
        contents_until(&mut sessions[0], "bye").await,
        vec!["later", "bye"]
    );
    assert_eq!(contents_until(&mut sessions[1], "bye").await, vec!["bye"]);
    assert_eq!(contents_until(&mut sessions[2], "bye").await, vec!["bye"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_channel_reaches_only_those_who_can_view_it_embedded() {
    a_private_channel_reaches_only_those_who_can_view_it(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_channel_reaches_only_those_who_can_view_it_on_a_cluster() {
    a_private_channel_reaches_only_those_who_can_view_it(Shape::cluster().await).await;
}
