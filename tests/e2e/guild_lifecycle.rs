//! Guild lifecycle dispatches over real sockets, on both shapes: a member removed from a
//! guild (kicked or banned) gets GUILD_DELETE with the guild id and no `unavailable`.

use serde_json::json;

use crate::harness::{Gateway, Server, Shape};

async fn removed_member_gets_guild_delete(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, _) = anon.register("owner").await;
    let (member, member_id) = anon.register("member").await;
    let guild = owner
        .ok("POST", "/guilds", Some(json!({ "name": "Lifecycle" })))
        .await;
    let g = guild["id"].as_str().expect("guild id").to_owned();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_gets_guild_delete_embedded() {
    removed_member_gets_guild_delete(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removed_member_gets_guild_delete_on_postgres_and_nats() {
    removed_member_gets_guild_delete(Shape::cluster().await).await;
}
