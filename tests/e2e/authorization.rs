//! The authorization matrix: every guild and channel route, called as an outsider, as a
//! member without the permission it needs, and as a member with it. The first two get
//! 403 or 404 with Discord's error codes and change nothing (the guild's observable
//! state is compared before and after); the third succeeds.

use serde_json::{json, Value};

use crate::harness::{Api, Server, Shape};

/// Discord's permission bits used here.
mod bit {
    pub const CREATE_INSTANT_INVITE: u64 = 1 << 0;
    pub const KICK_MEMBERS: u64 = 1 << 1;
    pub const BAN_MEMBERS: u64 = 1 << 2;
    pub const MANAGE_CHANNELS: u64 = 1 << 4;
    pub const MANAGE_GUILD: u64 = 1 << 5;
    pub const VIEW_AUDIT_LOG: u64 = 1 << 7;
    pub const VIEW_CHANNEL: u64 = 1 << 10;
    pub const SEND_MESSAGES: u64 = 1 << 11;
    pub const MANAGE_MESSAGES: u64 = 1 << 13;
    pub const READ_MESSAGE_HISTORY: u64 = 1 << 16;
    pub const MANAGE_NICKNAMES: u64 = 1 << 27;
    pub const MANAGE_ROLES: u64 = 1 << 28;
    pub const MODERATE_MEMBERS: u64 = 1 << 40;
}

struct World {
    owner: Api,
    outsider: Api,
    without: Api,
    with: Api,
    with_id: String,
    guild: String,
    channel: String,
    anon: Api,
    n: usize,
}

/// What a case's path and body may name, made fresh for each case.
struct Targets {
    victim: String,
    role: String,
    message: String,
    channel: String,
    invite: String,
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

impl World {
    async fn new(server: &Server) -> World {
        let anon = server.api(None);
        let (owner, _) = anon.register("owner").await;
        let (outsider, _) = anon.register("outsider").await;
        let (without, _) = anon.register("without").await;
        let (with, with_id) = anon.register("with").await;
        let guild = id(&owner
            .ok("POST", "/guilds", Some(json!({ "name": "Matrix" })))
            .await);
        let channel = id(&owner
            .ok(
                "POST",
                &format!("/guilds/{guild}/channels"),
                Some(json!({ "name": "room" })),
            )
            .await);
        let code = owner
            .ok(
                "POST",
                &format!("/channels/{channel}/invites"),
                Some(json!({})),
            )
            .await["code"]
            .as_str()
            .unwrap()
            .to_owned();
        for api in [&without, &with] {
            api.ok("POST", &format!("/invites/{code}"), None).await;
        }
        // @everyone may do nothing; a "viewer" role lets both members see the channel.
        owner
            .ok(
                "PATCH",
                &format!("/guilds/{guild}/roles/{guild}"),
                Some(json!({ "permissions": "0" })),
            )
            .await;
        let viewer = (bit::VIEW_CHANNEL | bit::READ_MESSAGE_HISTORY).to_string();
        let viewer = id(&owner
            .ok(
                "POST",
                &format!("/guilds/{guild}/roles"),
                Some(json!({ "name": "viewer", "permissions": viewer })),
            )
            .await);
        for api in [&without, &with] {
            let me = id(&api.ok("GET", "/users/@me", None).await);
            owner
                .ok(
                    "PUT",
                    &format!("/guilds/{guild}/members/{me}/roles/{viewer}"),
                    None,
                )
                .await;
        }
        World {
            owner,
            outsider,
            without,
            with,
            with_id,
            guild,
            channel,
            anon,
            n: 0,
        }
    }

    /// Fresh targets: a member with no roles, a role at the bottom, a channel and a
    /// message by the owner.
    async fn targets(&mut self) -> Targets {
        self.n += 1;
        let g = &self.guild;
        let (victim_api, victim) = self.anon.register(&format!("victim{}", self.n)).await;
        let code = self
            .owner
            .ok(
                "POST",
                &format!("/channels/{}/invites", self.channel),
                Some(json!({})),
            )
            .await["code"]
            .as_str()
            .unwrap()
            .to_owned();
        victim_api
            .ok("POST", &format!("/invites/{code}"), None)
            .await;
        let role = id(&self
            .owner
            .ok(
                "POST",
                &format!("/guilds/{g}/roles"),
                Some(json!({ "name": format!("target {}", self.n) })),
            )
            .await);
        let channel = id(&self
            .owner
            .ok(
                "POST",
                &format!("/guilds/{g}/channels"),
                Some(json!({ "name": format!("extra-{}", self.n) })),
            )
            .await);
        let message = id(&self
            .owner
            .ok(
                "POST",
                &format!("/channels/{}/messages", self.channel),
                Some(json!({ "content": "target" })),
            )
            .await);
        Targets {
            victim,
            role,
            message,
            channel,
            invite: code,
        }
    }

    /// Everything the guild shows its owner.
    async fn observe(&self) -> Value {
        let (g, c) = (&self.guild, &self.channel);
        let mut state = json!({});
        for path in [
            format!("/guilds/{g}"),
            format!("/guilds/{g}/roles"),
            format!("/guilds/{g}/channels"),
            format!("/guilds/{g}/members?limit=1000"),
            format!("/guilds/{g}/bans"),
            format!("/channels/{c}/messages?limit=100"),
        ] {
            state[path.as_str()] = self.owner.ok("GET", &path, None).await;
        }
        state
    }

    /// A role holding `needed`, created before the case's targets so that it sits
    /// above them (a new role goes to the bottom of the hierarchy).
    async fn grant_role(&self, needed: u64) -> String {
        let g = &self.guild;
        id(&self
            .owner
            .ok(
                "POST",
                &format!("/guilds/{g}/roles"),
                Some(json!({ "name": "grant", "permissions": needed.to_string() })),
            )
            .await)
    }

    async fn give(&self, role: &str) {
        self.owner
            .ok(
                "PUT",
                &format!(
                    "/guilds/{}/members/{}/roles/{role}",
                    self.guild, self.with_id
                ),
                None,
            )
            .await;
    }
}

/// One route: method, path and body templates ({g} guild, {c} channel, {v} victim,
/// {r} role, {m} message, {x} another channel, {i} an invite, {t} a day from now) and the permission it needs (0: being a
/// member, or for a message edit, being its author).
struct Case {
    method: &'static str,
    path: &'static str,
    body: Option<Value>,
    needs: u64,
}

fn case(method: &'static str, path: &'static str, body: Option<Value>, needs: u64) -> Case {
    Case {
        method,
        path,
        body,
        needs,
    }
}

fn fill(template: &str, w: &World, t: &Targets) -> String {
    template
        .replace("{g}", &w.guild)
        .replace("{c}", &w.channel)
        .replace("{v}", &t.victim)
        .replace("{r}", &t.role)
        .replace("{m}", &t.message)
        .replace("{x}", &t.channel)
        .replace("{i}", &t.invite)
        .replace("{t}", &a_day_from_now())
}

/// An ISO 8601 time a day from now (a timeout's end).
fn a_day_from_now() -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn cases() -> Vec<Case> {
    use bit::*;
    vec![
        case("GET", "/guilds/{g}", None, 0),
        case(
            "PATCH",
            "/guilds/{g}",
            Some(json!({ "name": "Renamed" })),
            MANAGE_GUILD,
        ),
        case("GET", "/guilds/{g}/channels", None, 0),
        case(
            "POST",
            "/guilds/{g}/channels",
            Some(json!({ "name": "new" })),
            MANAGE_CHANNELS,
        ),
        case("GET", "/guilds/{g}/roles", None, 0),
        case(
            "POST",
            "/guilds/{g}/roles",
            Some(json!({ "name": "new" })),
            MANAGE_ROLES,
        ),
        case(
            "PATCH",
            "/guilds/{g}/roles/{r}",
            Some(json!({ "name": "renamed" })),
            MANAGE_ROLES,
        ),
        case(
            "PATCH",
            "/guilds/{g}/roles",
            Some(json!([{ "id": "{r}", "position": 1 }])),
            MANAGE_ROLES,
        ),
        case("DELETE", "/guilds/{g}/roles/{r}", None, MANAGE_ROLES),
        case("GET", "/guilds/{g}/members", None, 0),
        case("GET", "/guilds/{g}/members/{v}", None, 0),
        case(
            "PATCH",
            "/guilds/{g}/members/{v}",
            Some(json!({ "nick": "renamed" })),
            MANAGE_NICKNAMES,
        ),
        case(
            "PATCH",
            "/guilds/{g}/members/{v}",
            Some(json!({ "roles": ["{r}"] })),
            MANAGE_ROLES,
        ),
        case(
            "PATCH",
            "/guilds/{g}/members/{v}",
            Some(json!({ "communication_disabled_until": "{t}" })),
            MODERATE_MEMBERS,
        ),
        case(
            "PUT",
            "/guilds/{g}/members/{v}/roles/{r}",
            None,
            MANAGE_ROLES,
        ),
        case(
            "DELETE",
            "/guilds/{g}/members/{v}/roles/{r}",
            None,
            MANAGE_ROLES,
        ),
        case("DELETE", "/guilds/{g}/members/{v}", None, KICK_MEMBERS),
        case("GET", "/guilds/{g}/bans", None, BAN_MEMBERS),
        case("PUT", "/guilds/{g}/bans/{v}", Some(json!({})), BAN_MEMBERS),
        case("DELETE", "/guilds/{g}/bans/{v}", None, BAN_MEMBERS),
        case("GET", "/guilds/{g}/audit-logs", None, VIEW_AUDIT_LOG),
        case("GET", "/channels/{c}", None, 0),
        case(
            "PATCH",
            "/channels/{x}",
            Some(json!({ "name": "renamed" })),
            MANAGE_CHANNELS,
        ),
        case("DELETE", "/channels/{x}", None, MANAGE_CHANNELS),
        case(
            "PUT",
            "/channels/{c}/permissions/{r}",
            Some(json!({ "type": 0, "allow": "0", "deny": "65536" })),
            MANAGE_ROLES,
        ),
        case(
            "DELETE",
            "/channels/{c}/permissions/{r}",
            None,
            MANAGE_ROLES,
        ),
        case(
            "POST",
            "/channels/{c}/invites",
            Some(json!({})),
            CREATE_INSTANT_INVITE,
        ),
        case("DELETE", "/invites/{i}", None, MANAGE_GUILD),
        case("GET", "/channels/{c}/messages", None, 0),
        case("GET", "/channels/{c}/messages/{m}", None, 0),
        case(
            "POST",
            "/channels/{c}/messages",
            Some(json!({ "content": "hi" })),
            SEND_MESSAGES,
        ),
        case(
            "DELETE",
            "/channels/{c}/messages/{m}",
            None,
            MANAGE_MESSAGES,
        ),
    ]
}

fn body_of(case: &Case, w: &World, t: &Targets) -> Option<Value> {
    case.body
        .as_ref()
        .map(|b| serde_json::from_str(&fill(&b.to_string(), w, t)).unwrap())
}

/// Discord's codes for "you may not": Unknown Guild / Channel / Message / Member / Role,
/// Missing Access, Missing Permissions.
const REFUSALS: [u64; 7] = [10004, 10003, 10008, 10007, 10011, 50001, 50013];

fn assert_refused(who: &str, method: &str, path: &str, r: &crate::harness::Reply) {
    assert!(
        r.status == 403 || r.status == 404,
        "{who}: {method} {path} was not refused: {r:?}"
    );
    let code = r.body["code"].as_u64().unwrap_or(0);
    assert!(
        REFUSALS.contains(&code),
        "{who}: {method} {path}: unexpected code {r:?}"
    );
    assert!(
        r.body["message"].is_string(),
        "{who}: {method} {path}: {r:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_refuses_outsiders_and_members_without_the_permission() {
    let server = Server::start(&Shape::Embedded);
    let mut w = World::new(&server).await;
    for case in cases() {
        let grant = if case.needs != 0 {
            Some(w.grant_role(case.needs).await)
        } else {
            None
        };
        let t = w.targets().await;
        let path = fill(case.path, &w, &t);
        let body = body_of(&case, &w, &t);
        let method = case.method;
        if method == "DELETE" && case.path.contains("/bans/") {
            // Something to lift.
            let ban = format!("/guilds/{}/bans/{}", w.guild, t.victim);
            w.owner.ok("PUT", &ban, Some(json!({}))).await;
        }

        let before = w.observe().await;
        let r = w.outsider.call(method, &path, body.clone()).await;
        assert_refused("an outsider", method, &path, &r);
        if case.needs != 0 {
            let r = w.without.call(method, &path, body.clone()).await;
            assert_refused("a member without the permission", method, &path, &r);
        }
        assert_eq!(
            w.observe().await,
            before,
            "{method} {path} changed something when refused"
        );

        if let Some(role) = &grant {
            w.give(role).await;
        }
        let r = w.with.call(method, &path, body.clone()).await;
        assert!(
            (200..300).contains(&r.status),
            "a member with the permission: {method} {path} failed: {r:?}"
        );
        if let Some(role) = grant {
            w.owner
                .ok("DELETE", &format!("/guilds/{}/roles/{role}", w.guild), None)
                .await;
        }
    }
}

/// Editing a message is its author's alone: no permission lets another member do it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_author_edits_a_message() {
    let server = Server::start(&Shape::Embedded);
    let mut w = World::new(&server).await;
    let grant = w.grant_role(bit::MANAGE_MESSAGES).await;
    let t = w.targets().await;
    let path = format!("/channels/{}/messages/{}", w.channel, t.message);
    let body = Some(json!({ "content": "edited" }));
    w.give(&grant).await;
    let before = w.observe().await;
    let r = w.outsider.call("PATCH", &path, body.clone()).await;
    assert_refused("an outsider", "PATCH", &path, &r);
    let r = w.with.call("PATCH", &path, body.clone()).await;
    assert_eq!(r.status, 403, "{r:?}");
    assert_eq!(
        r.body["code"], 50005,
        "Cannot edit a message authored by another user"
    );
    assert_eq!(w.observe().await, before);
    let edited = w.owner.ok("PATCH", &path, body).await;
    assert_eq!(edited["content"], "edited");
}
