//! Conformance suite: real Discord bot libraries against a spawned `chorus serve`.
//!
//! twilight and serenity run in-process; discord.py and discord.js run as child
//! processes (`conformance/python`, `conformance/js`, installed by `scripts/test.sh`).
//! Every gateway payload and REST response a library sees is pinned with insta snapshots
//! (`snapshots/`), ids, timestamps and secrets redacted, so a missing key shows as a diff.

#[path = "../e2e/harness.rs"]
#[allow(dead_code)]
mod harness;
mod redact;
mod script;
mod world;

mod js;
mod python;
mod rest;
mod serenity;
mod shapes;
mod twilight;
