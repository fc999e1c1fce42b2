//! Spawns real `chorus serve` processes and talks to them over real sockets.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

pub const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";
pub const NATS_URL: &str = "nats://127.0.0.1:4222";

fn pg_base() -> String {
    std::env::var("CHORUS_TEST_DATABASE_URL").unwrap_or_else(|_| PG_BASE.to_owned())
}

pub fn nats_url() -> String {
    let url = std::env::var("CHORUS_TEST_NATS_URL").unwrap_or_else(|_| NATS_URL.to_owned());
    let hostport = url.trim_start_matches("nats://").to_owned();
    if std::net::TcpStream::connect_timeout(
        &hostport.parse().expect("CHORUS_TEST_NATS_URL is host:port"),
        Duration::from_secs(3),
    )
    .is_err()
    {
        panic!("NATS is not reachable at {url}: start it (scripts/test.sh does) or set CHORUS_TEST_NATS_URL");
    }
    url
}

/// A fresh PostgreSQL database for one test. Panics if PostgreSQL is unreachable.
pub async fn fresh_postgres() -> String {
    use sqlx::Connection;
    let base = pg_base();
    let mut conn = sqlx::PgConnection::connect(&format!("{base}/postgres"))
        .await
        .unwrap_or_else(|e| panic!("PostgreSQL is not reachable at {base}: {e}; start it (scripts/test.sh does) or set CHORUS_TEST_DATABASE_URL"));
    let name = format!("chorus_e2e_{}", uuid_like());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    format!("{base}/{name}")
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:x}{:x}", nanos, std::process::id())
}

/// One running `chorus serve` process, killed on drop.
pub struct Server {
    child: Child,
    pub http: String,
    pub ws: String,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Which deployment shape a test runs against.
#[derive(Clone, Debug)]
pub enum Shape {
    Embedded,
    Cluster {
        database_url: String,
        nats_url: String,
    },
}

impl Shape {
    pub async fn cluster() -> Shape {
        Shape::Cluster {
            database_url: fresh_postgres().await,
            nats_url: nats_url(),
        }
    }
}

impl Server {
    pub fn start(shape: &Shape) -> Server {
        Self::start_with(shape, &[])
    }

    /// Starts with extra flags; `--bind` among them replaces the default (any free port).
    pub fn start_with(shape: &Shape, extra: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_chorus"));
        cmd.arg("serve");
        if !extra.contains(&"--bind") {
            cmd.arg("--bind").arg("127.0.0.1:0");
        }
        let dir = match shape {
            Shape::Embedded => {
                let dir = tempfile::tempdir().expect("tempdir");
                cmd.arg("--data-dir").arg(dir.path());
                Some(dir)
            }
            Shape::Cluster {
                database_url,
                nats_url,
            } => {
                cmd.arg("--database-url")
                    .arg(database_url)
                    .arg("--nats-url")
                    .arg(nats_url);
                None
            }
        };
        cmd.args(extra)
            .env_remove("CHORUS_DATABASE_URL")
            .env_remove("CHORUS_NATS_URL")
            .env(
                "CHORUS_LOG",
                std::env::var("CHORUS_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().expect("spawn chorus");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("listening on http://").nth(1) {
                    let addr = rest
                        .split_whitespace()
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr);
                    }
                }
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("chorus serve did not report its address within 60 s");
        Server {
            child,
            http: format!("http://{addr}"),
            ws: format!("ws://{addr}"),
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The data directory of an embedded server.
    pub fn data_dir(&self) -> Option<&std::path::Path> {
        self._dir.as_ref().map(|d| d.path())
    }

    pub fn api(&self, token: Option<&str>) -> Api {
        Api {
            http: reqwest::Client::new(),
            base: format!("{}/api/v10", self.http),
            token: token.map(str::to_owned),
        }
    }
}

/// A REST client.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub token: Option<String>,
}

pub struct Reply {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Value,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.body)
    }
}

impl Api {
    pub fn with_token(&self, token: &str) -> Api {
        Api {
            token: Some(token.to_owned()),
            ..self.clone()
        }
    }

    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.raw(method, path, body.map(|b| b.to_string().into_bytes()), &[])
            .await
    }

    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let is_get = method == reqwest::Method::GET;
        let mut req = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(t) = &self.token {
            req = req.header("Authorization", t);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req.header("Content-Type", "application/json").body(b);
        }
        // A GET may go out on a pooled connection the server has just closed (after
        // refusing an oversize body, say); like any HTTP client, retry it once.
        let retry = if is_get { req.try_clone() } else { None };
        let res = match (req.send().await, retry) {
            (Ok(res), _) => res,
            (Err(e), Some(again)) if e.is_request() => again.send().await.expect("request"),
            (Err(e), _) => panic!("request: {e:?}"),
        };
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned());
        let bytes = res.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!({ "raw": String::from_utf8_lossy(&bytes) }))
        };
        Reply {
            status,
            content_type,
            body,
        }
    }

    /// Calls and expects success; a 429 is waited out and retried, as clients do.
    pub async fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let mut r = self.call(method, path, body.clone()).await;
        while r.status == 429 {
            let wait = r.body["retry_after"].as_f64().unwrap_or(0.1);
            tokio::time::sleep(Duration::from_secs_f64(wait.clamp(0.001, 5.0))).await;
            r = self.call(method, path, body.clone()).await;
        }
        assert!(
            (200..300).contains(&r.status),
            "{method} {path} failed: {r:?}"
        );
        r.body
    }

    /// Creates a guild named `name`; its id.
    pub async fn create_guild(&self, name: &str) -> String {
        let guild = self
            .ok("POST", "/guilds", Some(json!({ "name": name })))
            .await;
        guild["id"].as_str().expect("guild id").to_owned()
    }

    /// The id of `guild`'s first channel (a new guild's general text channel).
    pub async fn first_channel(&self, guild: &str) -> String {
        let channels = self
            .ok("GET", &format!("/guilds/{guild}/channels"), None)
            .await;
        channels[0]["id"].as_str().expect("channel id").to_owned()
    }

    /// The audit log entries of `guild` with `action_type`, newest first.
    pub async fn audit_entries(&self, guild: &str, action_type: u16) -> Vec<Value> {
        let log = self
            .ok(
                "GET",
                &format!("/guilds/{guild}/audit-logs?action_type={action_type}"),
                None,
            )
            .await;
        log["audit_log_entries"]
            .as_array()
            .unwrap_or_else(|| panic!("no audit_log_entries: {log}"))
            .clone()
    }

    /// Has `member` join the guild of `channel_id` through an invite this user creates.
    pub async fn invite(&self, member: &Api, channel_id: &str) {
        let invite = self
            .ok(
                "POST",
                &format!("/channels/{channel_id}/invites"),
                Some(json!({ "max_age": 3600 })),
            )
            .await;
        let code = invite["code"].as_str().expect("invite code");
        member.ok("POST", &format!("/invites/{code}"), None).await;
    }

    /// Registers a user and returns an API client authenticated as them.
    pub async fn register(&self, username: &str) -> (Api, String) {
        let r = self
            .ok(
                "POST",
                "/auth/register",
                Some(json!({ "username": username, "password": "correct horse battery" })),
            )
            .await;
        let token = r["token"].as_str().expect("token").to_owned();
        let me = self.with_token(&token).ok("GET", "/users/@me", None).await;
        (
            self.with_token(&token),
            me["id"].as_str().unwrap().to_owned(),
        )
    }
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A gateway client that identifies and records every dispatch.
pub struct Gateway {
    ws: Ws,
    pub last_seq: u64,
    pub ready: Value,
    pub guild_creates: Vec<Value>,
}

impl Gateway {
    pub async fn connect(url: &str, token: &str) -> Gateway {
        // GUILDS, GUILD_MEMBERS, GUILD_MESSAGES, MESSAGE_CONTENT.
        Self::connect_with_intents(url, token, 33283).await
    }

    /// Connects and identifies with the given intents.
    pub async fn connect_with_intents(url: &str, token: &str, intents: u64) -> Gateway {
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("{url}/?v=10&encoding=json"))
            .await
            .expect("gateway connect");
        let hello = next_json(&mut ws).await;
        assert_eq!(hello["op"], 10, "first frame is HELLO: {hello}");
        assert!(hello["d"]["heartbeat_interval"].as_u64().unwrap() > 0);
        ws.send(Message::Text(
            json!({ "op": 2, "d": { "token": token, "intents": intents, "properties": { "os": "linux", "browser": "e2e", "device": "e2e" } } })
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
        let mut gw = Gateway {
            ws,
            last_seq: 0,
            ready: Value::Null,
            guild_creates: vec![],
        };
        let ready = gw.next_dispatch().await;
        assert_eq!(ready["t"], "READY", "{ready}");
        gw.ready = ready["d"].clone();
        let expected = gw.ready["guilds"].as_array().unwrap().len();
        while gw.guild_creates.len() < expected {
            let d = gw.next_dispatch().await;
            assert_eq!(d["t"], "GUILD_CREATE", "{d}");
            gw.guild_creates.push(d["d"].clone());
        }
        gw
    }

    /// The next dispatch (op 0), checking that `s` counts up by one.
    pub async fn next_dispatch(&mut self) -> Value {
        loop {
            let v = tokio::time::timeout(Duration::from_secs(15), next_json(&mut self.ws))
                .await
                .expect("no gateway frame within 15 s");
            if v["op"] == 0 {
                let s = v["s"].as_u64().expect("dispatch has s");
                assert_eq!(s, self.last_seq + 1, "s counts up from 1 without gaps");
                self.last_seq = s;
                return v;
            }
        }
    }

    /// Waits for a dispatch of the given type, skipping others.
    pub async fn wait_for(&mut self, t: &str) -> Value {
        loop {
            let d = self.next_dispatch().await;
            if d["t"] == t {
                return d["d"].clone();
            }
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws
            .send(Message::Text(v.to_string().into()))
            .await
            .unwrap();
    }

    /// Drops the connection as a library does before resuming: a close frame with a code
    /// other than 1000/1001, which keeps the session resumable.
    pub async fn close_for_resume(mut self) {
        use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame};
        self.ws
            .send(Message::Close(Some(CloseFrame {
                code: CloseCode::Library(4000),
                reason: "resuming".into(),
            })))
            .await
            .unwrap();
    }

    /// The next raw frame or the close code.
    pub async fn next_frame(&mut self) -> Result<Value, Option<u16>> {
        loop {
            match tokio::time::timeout(Duration::from_secs(15), self.ws.next())
                .await
                .expect("frame in time")
            {
                Some(Ok(Message::Text(t))) => return Ok(serde_json::from_str(&t).unwrap()),
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| u16::from(f.code))),
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(None),
            }
        }
    }
}

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        match ws
            .next()
            .await
            .expect("gateway closed")
            .expect("gateway error")
        {
            Message::Text(t) => return serde_json::from_str(&t).expect("gateway sends JSON"),
            Message::Close(f) => panic!("gateway closed: {f:?}"),
            _ => continue,
        }
    }
}

/// Opens a raw gateway socket (no IDENTIFY) for protocol tests.
pub async fn raw_gateway(url: &str) -> Gateway {
    let (ws, _) = tokio_tungstenite::connect_async(format!("{url}/?v=10&encoding=json"))
        .await
        .expect("connect");
    Gateway {
        ws,
        last_seq: 0,
        ready: Value::Null,
        guild_creates: vec![],
    }
}

/// A port nobody listens on now (bound and released), for flags that need it in advance.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
