//! Re-embeds the SQL migrations (`sqlx::migrate!` in src/migrations.rs) whenever a file
//! under `migrations/` is added or changed, which cargo would not notice on its own.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
}
