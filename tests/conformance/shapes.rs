//! The remaining wire shapes, pinned: every REST response and gateway dispatch that the
//! library scenarios do not already snapshot (moderation, members, bans, the audit log,
//! applications, invites, guild updates and removals, and Discord's error bodies). Ids
//! are shown by what they name, timestamps and secrets as placeholders.

use serde_json::{json, Value};

use crate::harness::{Gateway, Server, Shape};
use crate::redact::Redactor;

/// GUILDS | GUILD_MEMBERS | GUILD_MODERATION | GUILD_INVITES | GUILD_MESSAGES | MESSAGE_CONTENT.
const INTENTS: u64 = 1 | 2 | 4 | 64 | 512 | 32768;

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_other_rest_and_gateway_shape_is_pinned() {
    let server = Server::start(&Shape::Embedded);
    let anon = server.api(None);
    let (owner, owner_id) = anon.register("owner").await;
    let (member, member_id) = anon.register("member").await;
    let mut r = Redactor::default();
    r.name(&owner_id, "owner");
    r.name(&member_id, "member");

    let guild = owner
        .ok("POST", "/guilds", Some(json!({ "name": "Shapes" })))
        .await;
    let g = id(&guild);
    r.name(&g, "guild");
    let channel = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "talk" })),
        )
        .await;
    let c = id(&channel);
    r.name(&c, "channel");
    let mut rest = Vec::<(&str, Value)>::new();
    let mut gw_owner =
        Gateway::connect_with_intents(&server.ws, owner.token.as_deref().unwrap(), INTENTS).await;

    let invite = owner
        .ok(
            "POST",
            &format!("/channels/{c}/invites"),
            Some(json!({ "max_age": 0 })),
        )
        .await;
    let code = invite["code"].as_str().unwrap().to_owned();
    rest.push(("rest_create_invite", invite));
    rest.push((
        "rest_get_invite",
        anon.ok("GET", &format!("/invites/{code}?with_counts=true"), None)
            .await,
    ));
    member.ok("POST", &format!("/invites/{code}"), None).await;
    let mut gw_member =
        Gateway::connect_with_intents(&server.ws, member.token.as_deref().unwrap(), INTENTS).await;

    // Discord's error bodies.
    let errors = [
        (
            "rest_error_unauthorized",
            anon.call("GET", "/users/@me", None).await,
        ),
        (
            "rest_error_unknown_channel",
            owner.call("GET", "/channels/1", None).await,
        ),
        (
            "rest_error_invalid_form_body",
            owner
                .call("POST", "/guilds", Some(json!({ "name": 5 })))
                .await,
        ),
        (
            "rest_error_missing_permissions",
            member
                .call("POST", &format!("/guilds/{g}/roles"), Some(json!({})))
                .await,
        ),
    ];
    let mut dispatches = Vec::<(&str, Value)>::new();
    dispatches.push((
        "gateway_invite_create",
        gw_owner.wait_for("INVITE_CREATE").await,
    ));
    dispatches.push((
        "gateway_guild_member_add",
        gw_owner.wait_for("GUILD_MEMBER_ADD").await,
    ));

    let role = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/roles"),
            Some(json!({ "name": "crew", "permissions": "1024", "color": 255, "hoist": true })),
        )
        .await;
    let role_id = id(&role);
    r.name(&role_id, "role");
    rest.push((
        "rest_edit_role",
        owner
            .ok(
                "PATCH",
                &format!("/guilds/{g}/roles/{role_id}"),
                Some(json!({ "name": "crew 2" })),
            )
            .await,
    ));
    dispatches.push((
        "gateway_guild_role_update",
        gw_owner.wait_for("GUILD_ROLE_UPDATE").await,
    ));
    rest.push((
        "rest_list_roles",
        owner.ok("GET", &format!("/guilds/{g}/roles"), None).await,
    ));
    owner
        .ok(
            "PUT",
            &format!("/guilds/{g}/members/{member_id}/roles/{role_id}"),
            None,
        )
        .await;
    dispatches.push((
        "gateway_guild_member_update",
        gw_owner.wait_for("GUILD_MEMBER_UPDATE").await,
    ));
    rest.push((
        "rest_edit_member",
        owner
            .ok(
                "PATCH",
                &format!("/guilds/{g}/members/{member_id}"),
                Some(json!({ "nick": "Mem" })),
            )
            .await,
    ));
    rest.push((
        "rest_get_member",
        owner
            .ok("GET", &format!("/guilds/{g}/members/{member_id}"), None)
            .await,
    ));
    rest.push((
        "rest_list_members",
        owner
            .ok("GET", &format!("/guilds/{g}/members?limit=10"), None)
            .await,
    ));
    rest.push((
        "rest_get_guild",
        owner.ok("GET", &format!("/guilds/{g}"), None).await,
    ));
    rest.push((
        "rest_guild_channels",
        owner
            .ok("GET", &format!("/guilds/{g}/channels"), None)
            .await,
    ));
    rest.push((
        "rest_my_guilds",
        owner.ok("GET", "/users/@me/guilds", None).await,
    ));

    rest.push((
        "rest_rename_guild",
        owner
            .ok(
                "PATCH",
                &format!("/guilds/{g}"),
                Some(json!({ "name": "Shapes 2" })),
            )
            .await,
    ));
    dispatches.push((
        "gateway_guild_update",
        gw_owner.wait_for("GUILD_UPDATE").await,
    ));

    rest.push((
        "rest_edit_channel",
        owner
            .ok(
                "PATCH",
                &format!("/channels/{c}"),
                Some(json!({ "topic": "shapes", "rate_limit_per_user": 5 })),
            )
            .await,
    ));
    dispatches.push((
        "gateway_channel_update",
        gw_owner.wait_for("CHANNEL_UPDATE").await,
    ));

    let message = owner
        .ok(
            "POST",
            &format!("/channels/{c}/messages"),
            Some(json!({ "content": "hello" })),
        )
        .await;
    let m = id(&message);
    r.name(&m, "message");
    rest.push((
        "rest_edit_message",
        owner
            .ok(
                "PATCH",
                &format!("/channels/{c}/messages/{m}"),
                Some(json!({ "content": "edited" })),
            )
            .await,
    ));
    dispatches.push((
        "gateway_message_update",
        gw_owner.wait_for("MESSAGE_UPDATE").await,
    ));
    rest.push((
        "rest_list_messages",
        owner
            .ok("GET", &format!("/channels/{c}/messages"), None)
            .await,
    ));
    owner
        .ok("DELETE", &format!("/channels/{c}/messages/{m}"), None)
        .await;
    dispatches.push((
        "gateway_message_delete",
        gw_owner.wait_for("MESSAGE_DELETE").await,
    ));

    rest.push((
        "rest_delete_invite",
        owner.ok("DELETE", &format!("/invites/{code}"), None).await,
    ));
    dispatches.push((
        "gateway_invite_delete",
        gw_owner.wait_for("INVITE_DELETE").await,
    ));

    let extra = owner
        .ok(
            "POST",
            &format!("/guilds/{g}/channels"),
            Some(json!({ "name": "extra" })),
        )
        .await;
    let x = id(&extra);
    r.name(&x, "extra");
    dispatches.push((
        "gateway_channel_create",
        gw_owner.wait_for("CHANNEL_CREATE").await,
    ));
    owner.ok("DELETE", &format!("/channels/{x}"), None).await;
    dispatches.push((
        "gateway_channel_delete",
        gw_owner.wait_for("CHANNEL_DELETE").await,
    ));

    owner
        .raw(
            "PUT",
            &format!("/guilds/{g}/bans/{member_id}"),
            Some(b"{}".to_vec()),
            &[("X-Audit-Log-Reason", "shapes")],
        )
        .await;
    dispatches.push((
        "gateway_guild_ban_add",
        gw_owner.wait_for("GUILD_BAN_ADD").await,
    ));
    dispatches.push((
        "gateway_guild_delete",
        gw_member.wait_for("GUILD_DELETE").await,
    ));
    rest.push((
        "rest_list_bans",
        owner.ok("GET", &format!("/guilds/{g}/bans"), None).await,
    ));
    rest.push((
        "rest_get_ban",
        owner
            .ok("GET", &format!("/guilds/{g}/bans/{member_id}"), None)
            .await,
    ));
    owner
        .ok("DELETE", &format!("/guilds/{g}/bans/{member_id}"), None)
        .await;
    dispatches.push((
        "gateway_guild_ban_remove",
        gw_owner.wait_for("GUILD_BAN_REMOVE").await,
    ));
    dispatches.push((
        "gateway_guild_audit_log_entry_create",
        gw_owner.wait_for("GUILD_AUDIT_LOG_ENTRY_CREATE").await,
    ));
    rest.push((
        "rest_audit_log",
        owner
            .ok("GET", &format!("/guilds/{g}/audit-logs?limit=3"), None)
            .await,
    ));
    owner
        .ok("DELETE", &format!("/guilds/{g}/roles/{role_id}"), None)
        .await;
    dispatches.push((
        "gateway_guild_role_delete",
        gw_owner.wait_for("GUILD_ROLE_DELETE").await,
    ));

    // Applications and bots.
    let app = owner
        .ok(
            "POST",
            "/applications",
            Some(json!({ "name": "Shape Bot" })),
        )
        .await;
    let a = id(&app);
    r.name(&a, "application");
    rest.push(("rest_create_application", app));
    rest.push((
        "rest_get_application",
        owner.ok("GET", &format!("/applications/{a}"), None).await,
    ));
    rest.push((
        "rest_create_bot",
        owner
            .ok("POST", &format!("/applications/{a}/bot"), None)
            .await,
    ));
    rest.push((
        "rest_reset_bot_token",
        owner
            .ok("POST", &format!("/applications/{a}/bot/reset"), None)
            .await,
    ));

    for (name, reply) in errors {
        assert!(reply.status >= 400, "{name}: {reply:?}");
        assert_eq!(
            reply.content_type.as_deref(),
            Some("application/json"),
            "{name}"
        );
        insta::assert_json_snapshot!(
            name,
            json!({ "status": reply.status, "body": r.apply(&reply.body) })
        );
    }
    for (name, value) in rest {
        insta::assert_json_snapshot!(name, r.apply(&value));
    }
    for (name, value) in dispatches {
        insta::assert_json_snapshot!(name, r.apply(&value));
    }
}
