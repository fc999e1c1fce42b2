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
        let out = chorus()
            .args(&args)
            .arg("--data-dir")
            .arg(dir.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} should fail");
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
