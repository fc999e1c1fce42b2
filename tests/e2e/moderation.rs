//! Moderation over real sockets, on both shapes: roles, member edits and timeouts,
//! overwrites, slowmode, kicks, bans (with message deletion), leaving, channel edits and
//! deletion, the audit log, and the dispatches each of them sends.

use serde_json::{json, Value};

use crate::harness::{Api, Gateway, Reply, Server, Shape};

fn assert_error(r: &Reply, status: u16, code: u64, what: &str) {
    assert_eq!(r.status, status, "{what}: {r:?}");
    assert_eq!(r.body["code"], code, "{what}: {r:?}");
    assert!(r.body["message"].is_string(), "{what}: {r:?}");
}

async fn with_reason(api: &Api, method: &str, path: &str, body: Value, reason: &str) -> Reply {
    api.raw(
        method,
        path,
        Some(body.to_string().into_bytes()),
        &[("X-Audit-Log-Reason", reason)],
    )
    .await
}

fn now_ms() -> u64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    u64::try_from(d.as_millis()).unwrap()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

const KICK: u64 = 1 << 1;
const BAN: u64 = 1 << 2;
const MANAGE_CHANNELS: u64 = 1 << 4;
const VIEW_AUDIT_LOG: u64 = 1 << 7;
const SEND_MESSAGES: u64 = 1 << 11;
const MANAGE_MESSAGES: u64 = 1 << 13;
const MANAGE_NICKNAMES: u64 = 1 << 27;
const MANAGE_ROLES: u64 = 1 << 28;
const MODERATE_MEMBERS: u64 = 1 << 40;

async fn moderation(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, owner_id) = anon.register("owner").await;
    let (moder, moder_id) = anon.register("moder").await;
    let (member, member_id) = anon.register("member").await;
    let (outsider, _) = anon.register("outsider").await;
    let guild = owner
        .ok("POST", "/guilds", Some(json!({ "name": "Moderated" })))
        .await;
    let g = id(&guild);
    let lobby = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "lobby" })),
        )
        .await;
    let lobby = id(&lobby);
    let invite = owner
        .ok(
            "POST",
            &format!("/channels/{lobby}/invites"),
            Some(json!({})),
        )
        .await;
    let code = invite["code"].as_str().unwrap().to_owned();
    moder.ok("POST", &format!("/invites/{code}"), None).await;
    member.ok("POST", &format!("/invites/{code}"), None).await;
    // GUILDS, GUILD_MEMBERS (member updates and removals), GUILD_MODERATION (bans, audit
    // log entries), GUILD_MESSAGES.
    let intents = 1 | (1 << 1) | (1 << 2) | (1 << 9);
    let mut owner_gw =
        Gateway::connect_with_intents(&server.ws, owner.token.as_deref().unwrap(), intents).await;

    // Roles: the owner makes Mods, with a reason, and gives it to the moderator.
    let perms = KICK
        | BAN
        | MANAGE_CHANNELS
        | VIEW_AUDIT_LOG
        | MANAGE_NICKNAMES
        | MANAGE_ROLES
        | MODERATE_MEMBERS;
    let r = with_reason(
        &owner,
        "POST",
        &format!("/guilds/{g}/roles"),
        json!({ "name": "Mods", "permissions": perms.to_string(), "hoist": true, "color": 3447003 }),
        "a%20team",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    let mods = r.body.clone();
    assert_eq!(mods["name"], "Mods");
    assert_eq!(mods["permissions"], perms.to_string());
    assert_eq!(mods["position"], 1);
    assert_eq!(mods["hoist"], true);
    let mods_id = id(&mods);
    let created = owner_gw.wait_for("GUILD_ROLE_CREATE").await;
    assert_eq!(created["guild_id"], g.as_str());
    assert_eq!(created["role"]["id"], mods_id.as_str());
    let entry = owner_gw.wait_for("GUILD_AUDIT_LOG_ENTRY_CREATE").await;
    assert_eq!(entry["action_type"], 30);
    assert_eq!(entry["target_id"], mods_id.as_str());
    assert_eq!(entry["reason"], "a team");
    let roles = owner.ok("GET", &format!("/guilds/{g}/roles"), None).await;
    assert_eq!(roles.as_array().unwrap().len(), 2, "{roles}");
    assert_eq!(roles[0]["id"], g.as_str(), "@everyone first");
    let r = owner
        .call(
            "PUT",
            &format!("/guilds/{g}/members/{moder_id}/roles/{mods_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let update = owner_gw.wait_for("GUILD_MEMBER_UPDATE").await;
    assert_eq!(update["user"]["id"], moder_id.as_str());
    assert_eq!(update["roles"], json!([mods_id]));
    assert_eq!(update["guild_id"], g.as_str());
    let guild_now = owner.ok("GET", &format!("/guilds/{g}"), None).await;
    assert_eq!(guild_now["roles"].as_array().unwrap().len(), 2);

    // Refusals: granting what one lacks, editing one's own top role, no permission,
    // not a member.
    let r = moder
        .call(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "permissions": "8" })),
        )
        .await;
    assert_error(&r, 403, 50013, "moderator grants ADMINISTRATOR");
    let r = moder
        .call(
            "PATCH",
            &format!("/guilds/{g}/roles/{mods_id}"),
            Some(json!({ "name": "Admins" })),
        )
        .await;
    assert_error(&r, 403, 50013, "moderator edits their own top role");
    let r = member
        .call(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_error(&r, 403, 50013, "member creates a role");
    let r = outsider
        .call("GET", &format!("/guilds/{g}/roles"), None)
        .await;
    assert_error(&r, 404, 10004, "outsider lists roles");
    let r = outsider
        .call("DELETE", &format!("/guilds/{g}/members/{member_id}"), None)
        .await;
    assert_error(&r, 404, 10004, "outsider kicks");
    let r = moder
        .call("DELETE", &format!("/guilds/{g}/members/{owner_id}"), None)
        .await;
    assert_error(&r, 403, 50013, "moderator kicks the owner");
    let r = moder
        .call(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "color": "red" })),
        )
        .await;
    assert_error(&r, 400, 50035, "a colour that is not a number");
    assert!(r.body["errors"]["color"].is_object(), "{r:?}");

    // A role made, edited and reordered by the moderator, below their own.
    let helpers = moder
        .ok(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "name": "Helpers" })),
        )
        .await;
    let helpers_id = id(&helpers);
    let edited = moder
        .ok(
            "PATCH",
            &format!("/guilds/{g}/roles/{helpers_id}"),
            Some(json!({ "color": 65280, "mentionable": true })),
        )
        .await;
    assert_eq!(edited["color"], 65280);
    assert_eq!(edited["mentionable"], true);
    let reordered = owner
        .ok(
            "PATCH",
            &format!("/guilds/{g}/roles"),
            Some(json!([{ "id": helpers_id, "position": 1 }, { "id": mods_id, "position": 2 }])),
        )
        .await;
    let positions: Vec<(String, u64)> = reordered
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (id(r), r["position"].as_u64().unwrap()))
        .collect();
    assert!(
        positions.contains(&(helpers_id.clone(), 1)),
        "{positions:?}"
    );
    assert!(positions.contains(&(mods_id.clone(), 2)), "{positions:?}");

    // Member edits: nickname, roles and a timeout; then lifting it; one's own nick.
    let until = domain::timefmt::discord_ms(now_ms() + 10 * 60_000);
    let r = with_reason(
        &moder,
        "PATCH",
        &format!("/guilds/{g}/members/{member_id}"),
        json!({ "nick": "Quiet", "roles": [helpers_id], "communication_disabled_until": until }),
        "cool down",
    )
    .await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["nick"], "Quiet");
    assert_eq!(r.body["roles"], json!([helpers_id]));
    assert!(r.body["communication_disabled_until"].is_string(), "{r:?}");
    let update = owner_gw.wait_for("GUILD_MEMBER_UPDATE").await;
    assert_eq!(update["nick"], "Quiet");
    assert!(update["communication_disabled_until"].is_string());
    // A timed-out member cannot speak.
    let r = member
        .call(
            "POST",
            &format!("/channels/{lobby}/messages"),
            Some(json!({ "content": "let me talk" })),
        )
        .await;
    assert_eq!(r.status, 403, "{r:?}");
    let far = domain::timefmt::discord_ms(now_ms() + 29 * 24 * 3_600_000);
    let r = moder
        .call(
            "PATCH",
            &format!("/guilds/{g}/members/{member_id}"),
            Some(json!({ "communication_disabled_until": far })),
        )
        .await;
    assert_error(&r, 400, 50035, "a timeout beyond 28 days");
    let r = moder
        .call(
            "PATCH",
            &format!("/guilds/{g}/members/{member_id}"),
            Some(json!({ "communication_disabled_until": "tomorrow" })),
        )
        .await;
    assert_error(&r, 400, 50035, "a timeout that is no date");
    let lifted = moder
        .ok(
            "PATCH",
            &format!("/guilds/{g}/members/{member_id}"),
            Some(json!({ "communication_disabled_until": null })),
        )
        .await;
    assert!(lifted["communication_disabled_until"].is_null());
    let me = member
        .ok(
            "PATCH",
            &format!("/guilds/{g}/members/@me"),
            Some(json!({ "nick": "Me" })),
        )
        .await;
    assert_eq!(me["nick"], "Me");
    let got = owner
        .ok("GET", &format!("/guilds/{g}/members/{member_id}"), None)
        .await;
    assert_eq!(got["nick"], "Me");
    assert_eq!(got["user"]["id"], member_id.as_str());
    let list = owner
        .ok("GET", &format!("/guilds/{g}/members?limit=10"), None)
        .await;
    assert_eq!(list.as_array().unwrap().len(), 3);
    let page = owner
        .ok(
            "GET",
            &format!("/guilds/{g}/members?limit=1&after={owner_id}"),
            None,
        )
        .await;
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_ne!(page[0]["user"]["id"], owner_id.as_str());

    // Overwrites: deny the member SEND_MESSAGES in the lobby, then remove it.
    let r = owner
        .call(
            "PUT",
            &format!("/channels/{lobby}/permissions/{member_id}"),
            Some(json!({ "type": 1, "allow": "0", "deny": SEND_MESSAGES.to_string() })),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let update = owner_gw.wait_for("CHANNEL_UPDATE").await;
    assert_eq!(update["id"], lobby.as_str());
    assert_eq!(
        update["permission_overwrites"],
        json!([{ "id": member_id, "type": 1, "allow": "0", "deny": SEND_MESSAGES.to_string() }])
    );
    let r = member
        .call(
            "POST",
            &format!("/channels/{lobby}/messages"),
            Some(json!({ "content": "denied" })),
        )
        .await;
    assert_error(&r, 403, 50013, "sending with SEND_MESSAGES denied");
    let r = owner
        .call(
            "PUT",
            &format!("/channels/{lobby}/permissions/{member_id}"),
            Some(json!({ "type": 7 })),
        )
        .await;
    assert_error(&r, 400, 50035, "an overwrite type that is neither 0 nor 1");
    let r = owner
        .call(
            "DELETE",
            &format!("/channels/{lobby}/permissions/{member_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let update = owner_gw.wait_for("CHANNEL_UPDATE").await;
    assert_eq!(update["permission_overwrites"], json!([]));

    // Slowmode: the member waits; the owner and MANAGE_MESSAGES holders do not.
    let slow = moder
        .ok(
            "PATCH",
            &format!("/channels/{lobby}"),
            Some(json!({ "rate_limit_per_user": 30, "topic": "slow" })),
        )
        .await;
    assert_eq!(slow["rate_limit_per_user"], 30);
    assert_eq!(slow["topic"], "slow");
    let update = owner_gw.wait_for("CHANNEL_UPDATE").await;
    assert_eq!(update["rate_limit_per_user"], 30);
    let r = moder
        .call(
            "PATCH",
            &format!("/channels/{lobby}"),
            Some(json!({ "rate_limit_per_user": 21601 })),
        )
        .await;
    assert_error(&r, 400, 50035, "slowmode beyond 6 hours");
    assert!(r.body["errors"]["rate_limit_per_user"].is_object(), "{r:?}");
    let post = |api: &Api, content: &str| {
        let api = api.clone();
        let path = format!("/channels/{lobby}/messages");
        let body = json!({ "content": content });
        async move { api.call("POST", &path, Some(body)).await }
    };
    assert_eq!(post(&member, "one").await.status, 200);
    let r = post(&member, "two").await;
    assert_error(&r, 429, 20016, "slowmode");
    assert!(r.body["retry_after"].as_f64().unwrap() > 0.0, "{r:?}");
    assert_eq!(post(&owner, "one").await.status, 200);
    assert_eq!(post(&owner, "two").await.status, 200);
    let janitors = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "name": "Janitors", "permissions": MANAGE_MESSAGES })),
        )
        .await;
    let janitors_id = id(&janitors);
    let r = owner
        .call(
            "PUT",
            &format!("/guilds/{g}/members/{member_id}/roles/{janitors_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(
        post(&member, "three").await.status,
        200,
        "MANAGE_MESSAGES bypasses"
    );
    let r = owner
        .call(
            "DELETE",
            &format!("/guilds/{g}/members/{member_id}/roles/{janitors_id}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204);
    let member_now = owner
        .ok("GET", &format!("/guilds/{g}/members/{member_id}"), None)
        .await;
    assert_eq!(member_now["roles"], json!([helpers_id]));

    let off = moder
        .ok(
            "PATCH",
            &format!("/channels/{lobby}"),
            Some(json!({ "rate_limit_per_user": 0 })),
        )
        .await;
    assert_eq!(off["rate_limit_per_user"], 0);

    // A kick with a reason; the member comes back and speaks; a ban deletes it.
    let r = with_reason(
        &moder,
        "DELETE",
        &format!("/guilds/{g}/members/{member_id}"),
        json!({}),
        "spam",
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let removed = owner_gw.wait_for("GUILD_MEMBER_REMOVE").await;
    assert_eq!(removed["user"]["id"], member_id.as_str());
    assert_eq!(removed["guild_id"], g.as_str());
    let r = member
        .call("GET", &format!("/guilds/{g}/roles"), None)
        .await;
    assert_error(&r, 404, 10004, "a kicked member");
    member.ok("POST", &format!("/invites/{code}"), None).await;
    let said = member
        .ok(
            "POST",
            &format!("/channels/{lobby}/messages"),
            Some(json!({ "content": "spam again" })),
        )
        .await;
    let r = with_reason(
        &moder,
        "PUT",
        &format!("/guilds/{g}/bans/{member_id}"),
        json!({ "delete_message_seconds": 3600 }),
        "more spam",
    )
    .await;
    assert_eq!(r.status, 204, "{r:?}");
    let ban = owner_gw.wait_for("GUILD_BAN_ADD").await;
    assert_eq!(ban["user"]["id"], member_id.as_str());
    // Its messages of the last hour go, one MESSAGE_DELETE each.
    loop {
        let deleted = owner_gw.wait_for("MESSAGE_DELETE").await;
        if deleted["id"] == said["id"] {
            break;
        }
    }
    let history = owner
        .ok(
            "GET",
            &format!("/channels/{lobby}/messages?limit=100"),
            None,
        )
        .await;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["author"]["id"] != member_id.as_str()),
        "the ban deleted the member's recent messages: {history}"
    );
    let bans = moder.ok("GET", &format!("/guilds/{g}/bans"), None).await;
    assert_eq!(
        bans,
        json!([{ "reason": "more spam", "user": bans[0]["user"].clone() }])
    );
    assert_eq!(bans[0]["user"]["id"], member_id.as_str());
    let one = moder
        .ok("GET", &format!("/guilds/{g}/bans/{member_id}"), None)
        .await;
    assert_eq!(one["reason"], "more spam");
    let r = member.call("POST", &format!("/invites/{code}"), None).await;
    assert_error(&r, 403, 40007, "a banned user joins");
    let r = moder
        .call(
            "PUT",
            &format!("/guilds/{g}/bans/{member_id}"),
            Some(json!({ "delete_message_seconds": 604801 })),
        )
        .await;
    assert_error(&r, 400, 50035, "delete_message_seconds beyond 7 days");
    let r = moder
        .call("DELETE", &format!("/guilds/{g}/bans/{member_id}"), None)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    owner_gw.wait_for("GUILD_BAN_REMOVE").await;
    let r = moder
        .call("GET", &format!("/guilds/{g}/bans/{member_id}"), None)
        .await;
    assert_error(&r, 404, 10026, "a lifted ban");
    member.ok("POST", &format!("/invites/{code}"), None).await;

    // The audit log: VIEW_AUDIT_LOG only; reasons; filters.
    let r = member
        .call("GET", &format!("/guilds/{g}/audit-logs"), None)
        .await;
    assert_error(&r, 403, 50013, "the audit log without VIEW_AUDIT_LOG");
    let log = moder
        .ok("GET", &format!("/guilds/{g}/audit-logs"), None)
        .await;
    let entries = log["audit_log_entries"].as_array().unwrap();
    let types: Vec<u64> = entries
        .iter()
        .map(|e| e["action_type"].as_u64().unwrap())
        .collect();
    for t in [10, 11, 13, 15, 20, 22, 23, 24, 25, 30, 31, 40] {
        assert!(types.contains(&t), "action type {t} in {types:?}");
    }
    for key in [
        "users",
        "integrations",
        "webhooks",
        "threads",
        "application_commands",
    ] {
        assert!(log[key].is_array(), "{key} in {log}");
    }
    let created = entries
        .iter()
        .find(|e| e["action_type"] == 30 && e["target_id"] == mods_id.as_str())
        .unwrap();
    assert_eq!(created["reason"], "a team", "percent-decoded");
    let kicks = moder
        .ok(
            "GET",
            &format!("/guilds/{g}/audit-logs?action_type=20"),
            None,
        )
        .await;
    let kicks = kicks["audit_log_entries"].as_array().unwrap().clone();
    assert_eq!(kicks.len(), 1);
    assert_eq!(kicks[0]["reason"], "spam");
    assert_eq!(kicks[0]["user_id"], moder_id.as_str());
    assert_eq!(kicks[0]["target_id"], member_id.as_str());
    let by_owner = moder
        .ok(
            "GET",
            &format!("/guilds/{g}/audit-logs?user_id={owner_id}&limit=100"),
            None,
        )
        .await;
    assert!(by_owner["audit_log_entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["user_id"] == owner_id.as_str()));
    let first = moder
        .ok("GET", &format!("/guilds/{g}/audit-logs?limit=1"), None)
        .await;
    assert_eq!(first["audit_log_entries"][0], entries[0]);
    let before = entries[0]["id"].as_str().unwrap();
    let older = moder
        .ok(
            "GET",
            &format!("/guilds/{g}/audit-logs?before={before}&limit=2"),
            None,
        )
        .await;
    assert_eq!(older["audit_log_entries"][0], entries[1]);
    let r = moder
        .call("GET", &format!("/guilds/{g}/audit-logs?limit=101"), None)
        .await;
    assert_error(&r, 400, 50035, "an audit log limit above 100");

    // Leaving; the owner cannot.
    let r = moder
        .call("DELETE", &format!("/users/@me/guilds/{g}"), None)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let left = owner_gw.wait_for("GUILD_MEMBER_REMOVE").await;
    assert_eq!(left["user"]["id"], moder_id.as_str());
    let r = owner
        .call("DELETE", &format!("/users/@me/guilds/{g}"), None)
        .await;
    assert_error(&r, 400, 50035, "the owner leaves");

    // Deleting a role and a channel.
    let r = owner
        .call("DELETE", &format!("/guilds/{g}/roles/{helpers_id}"), None)
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let gone = owner_gw.wait_for("GUILD_ROLE_DELETE").await;
    assert_eq!(gone["role_id"], helpers_id.as_str());
    let deleted = owner
        .ok("DELETE", &format!("/channels/{lobby}"), None)
        .await;
    assert_eq!(deleted["id"], lobby.as_str());
    let gone = owner_gw.wait_for("CHANNEL_DELETE").await;
    assert_eq!(gone["id"], lobby.as_str());
    let r = owner.call("GET", &format!("/channels/{lobby}"), None).await;
    assert_error(&r, 404, 10003, "a deleted channel");
    let r = outsider
        .call(
            "PATCH",
            &format!("/channels/{lobby}"),
            Some(json!({ "name": "x" })),
        )
        .await;
    assert_eq!(r.status, 404, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_embedded() {
    moderation(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moderation_on_postgres_and_nats() {
    moderation(Shape::cluster().await).await;
}

/// A snowflake made at `ms` (Unix ms), for ids of messages that do not exist.
fn snowflake_at(ms: u64) -> String {
    ((ms - 1_420_070_400_000) << 22 | 1).to_string()
}

/// Bulk delete: a moderator removes several messages at once, with one
/// MESSAGE_DELETE_BULK, one MESSAGE_BULK_DELETE audit entry, and Discord's errors for what
/// it refuses.
async fn bulk_delete(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, owner_id) = anon.register("owner").await;
    let (member, _) = anon.register("member").await;
    let g = owner.create_guild("Purged").await;
    let channels = owner
        .ok("GET", &format!("/guilds/{g}/channels"), None)
        .await;
    let c = id(&channels[0]);
    owner.invite(&member, &c).await;
    let mut gw = Gateway::connect(&server.ws, owner.token.as_deref().unwrap()).await;
    let path = format!("/channels/{c}/messages");
    let mut sent = Vec::new();
    for (who, text) in [
        (&member, "one"),
        (&member, "two"),
        (&member, "three"),
        (&owner, "four"),
    ] {
        let m = who
            .ok("POST", &path, Some(json!({ "content": text })))
            .await;
        sent.push(id(&m));
    }
    let bulk = format!("/channels/{c}/messages/bulk-delete");
    let body = |ids: &[&str]| Some(json!({ "messages": ids }));

    // Refused, and nothing deleted.
    let r = member
        .call("POST", &bulk, body(&[&sent[0], &sent[1]]))
        .await;
    assert_error(&r, 403, 50013, "an author without MANAGE_MESSAGES");
    for (ids, what) in [
        (vec![sent[0].as_str()], "one id"),
        (vec![sent[0].as_str(), sent[0].as_str()], "an id twice"),
        (vec![sent[0].as_str(), "x"], "not a snowflake"),
    ] {
        let r = owner.call("POST", &bulk, body(&ids)).await;
        assert_error(&r, 400, 50035, what);
    }
    let many: Vec<String> = (0..101)
        .map(|k| snowflake_at(now_ms() - 1000 - k))
        .collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_error(
        &owner.call("POST", &bulk, body(&many)).await,
        400,
        50035,
        "101 ids",
    );
    assert_error(
        &owner.call("POST", &bulk, Some(json!({}))).await,
        400,
        50035,
        "no messages",
    );
    let old = snowflake_at(now_ms() - 15 * 24 * 60 * 60 * 1000);
    assert_error(
        &owner.call("POST", &bulk, body(&[&sent[0], &old])).await,
        400,
        50034,
        "a message older than two weeks",
    );
    let unknown = format!("/channels/{}/messages/bulk-delete", snowflake_at(now_ms()));
    assert_error(
        &owner
            .call("POST", &unknown, body(&[&sent[0], &sent[1]]))
            .await,
        404,
        10003,
        "an unknown channel",
    );
    let history = owner.ok("GET", &path, None).await;
    assert_eq!(history.as_array().unwrap().len(), 4, "{history}");

    // Three of the four, plus an id of no message: 204, the three go.
    let nobody = snowflake_at(now_ms() - 1000);
    let r = owner
        .call(
            "POST",
            &bulk,
            body(&[&sent[2], &sent[0], &nobody, &sent[3]]),
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    let d = gw.wait_for("MESSAGE_DELETE_BULK").await;
    assert_eq!(d["ids"], json!([sent[2], sent[0], sent[3]]), "{d}");
    assert_eq!(d["channel_id"], c.as_str());
    assert_eq!(d["guild_id"], g.as_str());
    let history = owner.ok("GET", &path, None).await;
    let left: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(left, [sent[1].as_str()]);
    let entries = owner.audit_entries(&g, 73).await;
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["target_id"], c.as_str());
    assert_eq!(entries[0]["user_id"], owner_id.as_str());
    assert_eq!(entries[0]["options"]["count"], "3");
    // Naming only deleted messages changes nothing.
    let r = owner.call("POST", &bulk, body(&[&sent[0], &sent[2]])).await;
    assert_eq!(r.status, 204, "{r:?}");
    assert_eq!(owner.audit_entries(&g, 73).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_embedded() {
    bulk_delete(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_delete_on_postgres_and_nats() {
    bulk_delete(Shape::cluster().await).await;
}

/// Pins: a moderator pins and unpins, everyone who can view the channel gets
/// CHANNEL_PINS_UPDATE, `GET /pins` lists them (most recent first) with `pinned` set, the
/// audit log records MESSAGE_PIN and MESSAGE_UNPIN, and refusals have Discord's shape.
async fn pins(shape: Shape) {
    let server = Server::start(&shape);
    let anon = server.api(None);
    let (owner, owner_id) = anon.register("owner").await;
    let (member, member_id) = anon.register("member").await;
    let g = owner.create_guild("Pinned").await;
    let channels = owner
        .ok("GET", &format!("/guilds/{g}/channels"), None)
        .await;
    let c = id(&channels[0]);
    owner.invite(&member, &c).await;
    let mut gw = Gateway::connect(&server.ws, member.token.as_deref().unwrap()).await;
    let path = format!("/channels/{c}/messages");
    let first = id(&member
        .ok("POST", &path, Some(json!({ "content": "first" })))
        .await);
    let second = id(&owner
        .ok("POST", &path, Some(json!({ "content": "second" })))
        .await);
    let pin = |m: &str| format!("/channels/{c}/pins/{m}");

    assert_error(
        &member.call("PUT", &pin(&first), None).await,
        403,
        50013,
        "a member pins",
    );
    assert_error(
        &owner.call("PUT", &pin(&snowflake_at(now_ms())), None).await,
        404,
        10008,
        "an unknown message",
    );
    assert_error(
        &owner
            .call("PUT", &format!("/channels/{c}/pins/x"), None)
            .await,
        400,
        50035,
        "a bad id",
    );

    for m in [&first, &second] {
        let r = owner.call("PUT", &pin(m), None).await;
        assert_eq!(r.status, 204, "{r:?}");
        let d = gw.wait_for("CHANNEL_PINS_UPDATE").await;
        assert_eq!(
            (&d["channel_id"], &d["guild_id"]),
            (&json!(c), &json!(g)),
            "{d}"
        );
        assert!(
            d["last_pin_timestamp"]
                .as_str()
                .unwrap()
                .ends_with("+00:00"),
            "{d}"
        );
    }
    // Pinning again changes nothing.
    assert_eq!(owner.call("PUT", &pin(&first), None).await.status, 204);
    let pins = member.ok("GET", &format!("/channels/{c}/pins"), None).await;
    let listed: Vec<&str> = pins
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [second.as_str(), first.as_str()], "{pins}");
    assert!(
        pins.as_array().unwrap().iter().all(|m| m["pinned"] == true),
        "{pins}"
    );
    let got = member.ok("GET", &format!("{path}/{first}"), None).await;
    assert_eq!(got["pinned"], true);
    // The paginated route: one pin per page, the next page before the last pin time.
    let page = member
        .ok("GET", &format!("/channels/{c}/messages/pins?limit=1"), None)
        .await;
    assert_eq!(page["has_more"], true, "{page}");
    assert_eq!(page["items"][0]["message"]["id"], second.as_str(), "{page}");
    let before = page["items"][0]["pinned_at"].as_str().unwrap().to_owned();
    let page = member
        .ok(
            "GET",
            &format!(
                "/channels/{c}/messages/pins?limit=1&before={}",
                before.replace('+', "%2B")
            ),
            None,
        )
        .await;
    assert_eq!(page["items"][0]["message"]["id"], first.as_str(), "{page}");
    assert_eq!(page["has_more"], false, "{page}");
    assert_error(
        &member
            .call(
                "GET",
                &format!("/channels/{c}/messages/pins?before=yesterday"),
                None,
            )
            .await,
        400,
        50035,
        "a bad before",
    );

    let r = owner
        .call(
            "DELETE",
            &format!("/channels/{c}/messages/pins/{second}"),
            None,
        )
        .await;
    assert_eq!(r.status, 204, "{r:?}");
    gw.wait_for("CHANNEL_PINS_UPDATE").await;
    let pins = member.ok("GET", &format!("/channels/{c}/pins"), None).await;
    assert_eq!(pins.as_array().unwrap().len(), 1, "{pins}");
    assert_eq!(pins[0]["id"], first.as_str());
    // Deleting a pinned message takes it off the list.
    owner.call("DELETE", &format!("{path}/{first}"), None).await;
    let pins = member.ok("GET", &format!("/channels/{c}/pins"), None).await;
    assert_eq!(pins, json!([]));

    let pinned = owner.audit_entries(&g, 74).await;
    assert_eq!(pinned.len(), 2, "{pinned:?}");
    // Newest first: the owner's own message, then the member's.
    assert_eq!(pinned[0]["target_id"], owner_id.as_str());
    assert_eq!(pinned[1]["target_id"], member_id.as_str());
    assert_eq!(pinned[1]["options"]["message_id"], first.as_str());
    assert_eq!(pinned[1]["options"]["channel_id"], c.as_str());
    assert_eq!(owner.audit_entries(&g, 75).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_embedded() {
    pins(Shape::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_on_postgres_and_nats() {
    pins(Shape::cluster().await).await;
}
