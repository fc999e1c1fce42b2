//! Runs a bot written in another language (discord.py, discord.js) as a child process
//! and follows the `STEP name detail` lines it prints.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use crate::world::World;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running bot script, killed on drop.
pub struct Script {
    child: Child,
    lines: Receiver<String>,
    /// Everything it printed so far (stdout and stderr), for failure messages.
    seen: Vec<String>,
}

impl Drop for Script {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Script {
    /// Starts `program args` with the world's configuration in its environment.
    pub fn start(program: &Path, args: &[&Path], world: &World) -> Script {
        let mut child = Command::new(program)
            .args(args)
            .env("CHORUS_HTTP", &world.server.http)
            .env("CHORUS_WS", &world.server.ws)
            .env("BOT_TOKEN", &world.bot_token)
            .env("GUILD_ID", &world.guild_id)
            .env("CHANNEL_ID", &world.channel_id)
            .env("HUMAN_ID", &world.human_id)
            .env("SCENARIO_TIMEOUT", "45")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let (tx, lines) = std::sync::mpsc::channel();
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ]
        .into_iter()
        .enumerate()
        {
            let (is_err, stream) = (stream.0 == 1, stream.1);
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let line = if is_err {
                        format!("stderr: {line}")
                    } else {
                        line
                    };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        Script {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    fn fail(&mut self, why: &str) -> ! {
        // Collect what is still buffered, briefly.
        while let Ok(line) = self.lines.recv_timeout(Duration::from_millis(300)) {
            self.seen.push(line);
        }
        panic!("{why}\n--- script output ---\n{}", self.seen.join("\n"));
    }

    /// Waits for `STEP name ...` and returns what follows the name. A `FAIL` line, the
    /// script's exit or the time-out fails the test with everything the script printed.
    pub fn step(&mut self, name: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.starts_with("FAIL ") {
                        self.fail(&format!("the script failed before step {name}"));
                    }
                    if let Some(rest) = line.strip_prefix("STEP ") {
                        let (got, detail) = rest.split_once(' ').unwrap_or((rest, ""));
                        if got == name {
                            return detail.to_owned();
                        }
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.fail(&format!("no step {name} within {secs} s"))
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.fail(&format!("the script ended before step {name}"))
                }
            }
        }
    }

    /// Waits for the script to exit; it must print `DONE` and exit 0.
    pub fn finish(&mut self, secs: u64) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            match self
                .lines
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => self.fail("the script did not exit in time"),
            }
        }
        let status = self.child.wait().expect("wait for the script");
        if !status.success() || !self.seen.iter().any(|l| l == "DONE") {
            self.fail(&format!("the script exited with {status} without DONE"));
        }
        if let Some(f) = self.seen.iter().find(|l| l.starts_with("FAIL ")).cloned() {
            self.fail(&format!("the script reported {f}"));
        }
    }
}
