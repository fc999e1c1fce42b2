//! The `chorus` command line: configuration errors, graceful shutdown, JSON logs, and
//! the operator's projection commands against a running node.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::harness::{Server, Shape};

fn chorus() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_chorus"));
    c.env_remove("CHORUS_DATABASE_URL")
        .env_remove("CHORUS_NATS_URL");
    c
}

#[test]
fn configuration_errors_say_what_is_wrong_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["serve", "--database-url", "mysql://localhost/x"],
            "must start with postgres://",
        ),
        (
            vec!["serve", "--nats-url", "nats://127.0.0.1:4222"],
            "needs --database-url postgres://",
        ),
        (
            vec!["serve", "--nats-url", "http://x"],
            "must start with nats://",
        ),
        (
            vec!["serve", "--bind", "not-an-address"],
            "invalid value 'not-an-address'",
        ),
        (
            vec!["serve", "--node-id", "5000"],
            "--node-id must be between 0 and 1023",
        ),
        (
            vec!["serve", "--public-url", "http://x"],
            "--public-url must start with ws://",
        ),
        (
            vec!["serve", "--node-url", "node-a:8080"],
            "--node-url must start with ws://",
        ),
        (
            vec![
                "serve",
                "--database-url",
                "postgres://nobody@127.0.0.1:1/none",
            ],
            "cannot connect to PostgreSQL",
        ),
        (
            vec!["projections", "rebuild", "no_such_projection"],
            "no_such_projection",
        ),
    ];
    for (args, expected) in cases {
        let started = std::time::Instant::now();
        let out = chorus()
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
        // Not a speed check: a refused connection is reported when it is refused, not
        // after a connection pool's 30 s of retries.
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{args:?} took {:?} to fail",
            started.elapsed()
        );
        assert!(
            stderr.contains(expected),
            "{args:?}: expected {expected:?} in {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    }
}

fn pid(server: &Server) -> u32 {
    server.pid()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_shuts_the_server_down_gracefully() {
    let mut server = Server::start(&Shape::Embedded);
    let (alice, _) = server.api(None).register("alice").await;
    alice
        .ok(
            "POST",
            "/guilds",
            Some(json!({ "name": "Before shutdown" })),
        )
        .await;
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(pid(&server).to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let code = loop {
        if let Some(code) = server.try_wait() {
            break code;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "server did not stop after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(code.success(), "graceful shutdown exits 0, got {code:?}");
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let out = chorus()
        .args(["--log-format", "json", "migrate", "--data-dir"])
        .arg(dir.path())
        .env("CHORUS_LOG", "debug")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "debug logging says something");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string(), "{line}");
    }
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_are_rebuilt_while_the_server_keeps_serving() {
    let server = Server::start(&Shape::Embedded);
    let data_dir = server.data_dir().unwrap().to_owned();
    let (alice, _) = server.api(None).register("alice").await;
    let guild = alice
        .ok("POST", "/guilds", Some(json!({ "name": "Rebuilt" })))
        .await;
    let gid = guild["id"].as_str().unwrap();
    let cid = alice.first_channel(gid).await;
    for i in 0..30 {
        alice
            .ok(
                "POST",
                &format!("/channels/{cid}/messages"),
                Some(json!({ "content": format!("m{i}") })),
            )
            .await;
    }
    let before = alice
        .ok("GET", &format!("/channels/{cid}/messages?limit=100"), None)
        .await;

    // Rebuild from another process while the server runs, and keep using the server.
    let rebuild = chorus()
        .args(["projections", "rebuild", "read_models", "--data-dir"])
        .arg(&data_dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 30..40 {
        alice
            .ok(
                "POST",
                &format!("/channels/{cid}/messages"),
                Some(json!({ "content": format!("m{i}") })),
            )
            .await;
    }
    let out = rebuild.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "rebuild failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("rebuilt read_models"));

    let after = alice
        .ok("GET", &format!("/channels/{cid}/messages?limit=100"), None)
        .await;
    let after = after.as_array().unwrap();
    assert_eq!(
        after.len(),
        40,
        "every message is still there after the swap"
    );
    assert_eq!(
        &after[10..],
        before.as_array().unwrap().as_slice(),
        "the rebuilt rows equal the old ones"
    );

    let status = chorus()
        .args(["projections", "status", "--data-dir"])
        .arg(&data_dir)
        .output()
        .unwrap();
    assert!(status.status.success());
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("read_models") && text.contains("publisher"),
        "{text}"
    );
}
