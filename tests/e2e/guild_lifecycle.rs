//! Guild lifecycle dispatches over real sockets, on both shapes: a member removed from a
//! guild (kicked or banned) gets GUILD_DELETE with the guild id and no `unavailable`;
//! revoking an invite (DELETE /invites/{code}) sends INVITE_DELETE; renaming a guild
//! (PATCH /guilds/{id}) sends GUILD_UPDATE.

use serde_json::json;

use crate::harness::{Gateway, Server, Shape};

async fn removed_member_gets_guild_delete(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, _) = anon.register("owner").await;
    let (member, member_id) = anon.register("member").await;
    let g = owner.create_guild("Lifecycle").await;
    let lobby = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "lobby" })),
        )
        .await;
    let lobby = lobby["id"].as_str().expect("channel id").to_owned();
    let invite = owner
        .ok(
            "POST",
            &format!("/channels/{lobby}/invites"),
            Some(json!({})),
        )
        .await;
    let code = invite["code"].as_str().expect("code").to_owned();
    member.ok("POST", &format!("/invites/{code}"), None).await;
    let mut member_gw = Gateway::connect(&server.ws, member.token.as_deref().unwrap()).await;

    // Kicked: GUILD_DELETE {id} without `unavailable`.
    let r = owner
        .call("DELETE", &format!("/guilds/{g}/members/{member_id}"), None)
        .await;
    assert_eq!(r.status, 204, "kick: {r:?}");
    let deleted = member_gw.wait_for("GUILD_DELETE").await;
    assert_eq!(deleted["id"], g.as_str(), "{deleted}");
    assert!(deleted.get("unavailable").is_none(), "{deleted}");

    // Back in through the invite (GUILD_CREATE), then banned: GUILD_DELETE again.
    member.ok("POST", &format!("/invites/{code}"), None).await;
    let created = member_gw.wait_for("GUILD_CREATE").await;
    assert_eq!(created["id"], g.as_str(), "{created}");
    let r = owner
        .call(
            "PUT",
            &format!("/guilds/{g}/bans/{member_id}"),
            Some(json!({})),
        )
        .await;
    assert_eq!(r.status, 204, "ban: {r:?}");
    let deleted = member_gw.wait_for("GUILD_DELETE").await;
    assert_eq!(deleted["id"], g.as_str(), "{deleted}");
    assert!(deleted.get("unavailable").is_none(), "{deleted}");
}

const MANAGE_GUILD: u64 = 1 << 5;

async fn revoking_an_invite(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, _) = anon.register("owner").await;
    let (manager, manager_id) = anon.register("manager").await;
    let (member, _) = anon.register("member").await;
    let (late, _) = anon.register("late").await;
    let g = owner.create_guild("Invites").await;
    let lobby = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "lobby" })),
        )
        .await;
    let lobby = lobby["id"].as_str().expect("channel id").to_owned();
    let new_invite = || async {
        let invite = owner
            .ok(
                "POST",
                &format!("/channels/{lobby}/invites"),
                Some(json!({})),
            )
            .await;
        invite["code"].as_str().expect("code").to_owned()
    };
    let code = new_invite().await;
    manager.ok("POST", &format!("/invites/{code}"), None).await;
    member.ok("POST", &format!("/invites/{code}"), None).await;
    let role = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "name": "Managers", "permissions": MANAGE_GUILD.to_string() })),
        )
        .await;
    let role_id = role["id"].as_str().expect("role id").to_owned();
    let r = owner
        .call(
            "PUT",
            &format!("/guilds/{g}/members/{manager_id}/roles/{role_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "role given: {r:?}");
    // GUILDS and GUILD_INVITES.
    let intents = 1 | (1 << 6);
    let mut owner_gw =
        Gateway::connect_with_intents(&server.ws, owner.token.as_deref().unwrap(), intents).await;

    // Without MANAGE_GUILD or MANAGE_CHANNELS: 403 50013, and the invite stays.
    let r = member
        .call("DELETE", &format!("/invites/{code}"), None)
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["code"], 50013, "{r:?}");
    owner.ok("GET", &format!("/invites/{code}"), None).await;

    // With MANAGE_GUILD: the invite comes back, INVITE_DELETE goes out.
    let r = manager
        .call("DELETE", &format!("/invites/{code}"), None)
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["code"], code.as_str(), "{r:?}");
    let deleted = owner_gw.wait_for("INVITE_DELETE").await;
    assert_eq!(deleted["code"], code.as_str(), "{deleted}");
    assert_eq!(deleted["guild_id"], g.as_str(), "{deleted}");
    assert_eq!(deleted["channel_id"], lobby.as_str(), "{deleted}");
    // The audit log keeps who revoked it and what it was.
    let entries = owner.audit_entries(&g, 42).await;
    let log = json!(entries);
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(entries[0]["user_id"], manager_id.as_str(), "{log}");
    let old = |key: &str| {
        entries[0]["changes"]
            .as_array()
            .expect("changes")
            .iter()
            .find(|c| c["key"] == key)
            .map(|c| c["old_value"].clone())
    };
    assert_eq!(old("code"), Some(json!(code)), "{log}");
    assert_eq!(old("channel_id"), Some(json!(lobby)), "{log}");
    assert_eq!(old("uses"), Some(json!(2)), "{log}");

    // Gone: it can be neither shown, accepted nor deleted again.
    for (method, who) in [("GET", &late), ("POST", &late), ("DELETE", &manager)] {
        let r = who.call(method, &format!("/invites/{code}"), None).await;
        assert_eq!(r.status, 404, "{method}: {r:?}");
        assert_eq!(r.body["code"], 10006, "{method}: {r:?}");
    }
    let r = manager.call("DELETE", "/invites/nosuchcode", None).await;
    assert_eq!(r.body["code"], 10006, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_invite_embedded() {
    revoking_an_invite(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_an_invite_on_postgres_and_nats() {
    revoking_an_invite(Shape::cluster().await).await;
}

async fn renaming_a_guild(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, _) = anon.register("owner").await;
    let (member, _) = anon.register("member").await;
    let g = owner.create_guild("Before").await;
    let general = owner
        .ok("GET", &format!("/guilds/{g}/channels"), None)
        .await;
    let general = general[0]["id"].as_str().expect("channel id").to_owned();
    let invite = owner
        .ok(
            "POST",
            &format!("/channels/{general}/invites"),
            Some(json!({})),
        )
        .await;
    let code = invite["code"].as_str().expect("code").to_owned();
    member.ok("POST", &format!("/invites/{code}"), None).await;
    let mut member_gw = Gateway::connect(&server.ws, member.token.as_deref().unwrap()).await;

    let r = member
        .call(
            "PATCH",
            &format!("/guilds/{g}"),
            Some(json!({ "name": "Mine" })),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(r.body["code"], 50013, "{r:?}");

    let renamed = owner
        .ok(
            "PATCH",
            &format!("/guilds/{g}"),
            Some(json!({ "name": "After" })),
        )
        .await;
    assert_eq!(renamed["name"], "After", "{renamed}");
    let update = member_gw.wait_for("GUILD_UPDATE").await;
    assert_eq!(update["id"], g.as_str(), "{update}");
    assert_eq!(update["name"], "After", "{update}");
    assert!(update["roles"].is_array(), "{update}");
    let shown = member.ok("GET", &format!("/guilds/{g}"), None).await;
    assert_eq!(shown["name"], "After", "{shown}");
    // The audit log says what the name was, not only what it became.
    let entries = owner.audit_entries(&g, 1).await;
    let log = json!(entries);
    assert_eq!(entries.len(), 1, "{log}");
    assert_eq!(
        entries[0]["changes"],
        json!([{ "key": "name", "old_value": "Before", "new_value": "After" }]),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_guild_embedded() {
    renaming_a_guild(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn renaming_a_guild_on_postgres_and_nats() {
    renaming_a_guild(Shape::cluster().await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_gets_guild_delete_embedded() {
    removed_member_gets_guild_delete(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_gets_guild_delete_on_postgres_and_nats() {
    removed_member_gets_guild_delete(Shape::cluster().await).await;
}
