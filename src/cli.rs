//! Command-line interface and configuration (flags, with `CHORUS_*` environment variables).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "chorus",
    version,
    about = "A self-hostable, Discord-compatible community platform backend"
)]
pub struct Cli {
    /// Log format.
    #[arg(long, env = "CHORUS_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a Chorus node (embedded by default: SQLite under --data-dir, in-process bus).
    Serve(Box<ServeArgs>),
    /// Apply database migrations and exit.
    Migrate(DbArgs),
    /// Inspect or rebuild projections (read models).
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum ProjectionsCommand {
    /// Show each projection's position and lag behind the log.
    Status(DbArgs),
    /// Rebuild a projection from position 0 into fresh tables and swap them in.
    Rebuild {
        /// The projection to rebuild (see `status`).
        name: String,
        #[command(flatten)]
        db: DbArgs,
    },
}

#[derive(clap::Args, Debug, Clone)]
pub struct DbArgs {
    /// Database for the event log and read models: postgres://... or sqlite://...
    /// Default: SQLite at <data-dir>/chorus.db.
    #[arg(long, env = "CHORUS_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where the embedded SQLite database lives.
    #[arg(long, env = "CHORUS_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

#[derive(clap::Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address to listen on (HTTP API and gateway share it). Port 0 picks a free port.
    #[arg(long, env = "CHORUS_BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// NATS server for the clustered shape (nats://host:4222). Default: in-process bus.
    #[arg(long, env = "CHORUS_NATS_URL")]
    pub nats_url: Option<String>,
    /// Gateway URL announced to clients by GET /gateway (ws://host:port): the cluster's
    /// entry point, such as a load balancer. Default: ws://<bind address>.
    #[arg(long, env = "CHORUS_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// This node's own gateway URL, announced as READY's resume_gateway_url so that a
    /// client resumes on the node that holds its session (sessions are kept by the node
    /// they were opened on). Default: the public URL if set, else ws://<bind address>.
    #[arg(long, env = "CHORUS_NODE_URL")]
    pub node_url: Option<String>,
    /// Snowflake node id, 0-1023 (worker << 5 | process). Default: 0 embedded; claimed
    /// from PostgreSQL in a cluster.
    #[arg(long, env = "CHORUS_NODE_ID")]
    pub node_id: Option<u16>,
    /// Heartbeat interval announced to gateway clients, in milliseconds.
    #[arg(long, env = "CHORUS_HEARTBEAT_INTERVAL_MS", default_value_t = 41_250)]
    pub heartbeat_interval_ms: u64,
    #[command(flatten)]
    pub voice: crate::voice::VoiceArgs,
}

/// Which database a node uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(String),
    Postgres(String),
}

impl DbArgs {
    pub fn database(&self) -> anyhow::Result<Database> {
        match &self.database_url {
            None => {
                std::fs::create_dir_all(&self.data_dir).with_context(|| {
                    format!("cannot create the data directory {}", self.data_dir.display())
                })?;
                let path = self.data_dir.join("chorus.db");
                Ok(Database::Sqlite(format!("sqlite://{}?mode=rwc", path.display())))
            }
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Database::Postgres(url.clone()))
            }
            Some(url) if url.starts_with("sqlite:") => {
                let url = if url.contains('?') { url.clone() } else { format!("{url}?mode=rwc") };
                Ok(Database::Sqlite(url))
            }
            Some(url) => bail!(
                "--database-url / CHORUS_DATABASE_URL must start with postgres://, postgresql:// or sqlite:, got {:?}",
                url.split(':').next().unwrap_or_default()
            ),
        }
    }
}

impl ServeArgs {
    pub fn validate(&self) -> anyhow::Result<()> {
        if let Some(url) = &self.nats_url {
            if !url.starts_with("nats://") && !url.starts_with("tls://") {
                bail!(
                    "--nats-url / CHORUS_NATS_URL must start with nats:// or tls://, got {url:?}"
                );
            }
            if matches!(self.db.database()?, Database::Sqlite(_)) {
                bail!("--nats-url is for the clustered shape, which needs --database-url postgres://...: an SQLite file cannot be shared by several nodes");
            }
        }
        if let Some(id) = self.node_id {
            if id > 1023 {
                bail!("--node-id must be between 0 and 1023, got {id}");
            }
        }
        if self.heartbeat_interval_ms < 1000 || self.heartbeat_interval_ms > 600_000 {
            bail!("--heartbeat-interval-ms must be between 1000 and 600000");
        }
        self.voice.validate()?;
        for (flag, url) in [
            ("--public-url", &self.public_url),
            ("--node-url", &self.node_url),
        ] {
            if let Some(url) = url {
                if !url.starts_with("ws://") && !url.starts_with("wss://") {
                    bail!("{flag} must start with ws:// or wss://, got {url:?}");
                }
            }
        }
        Ok(())
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}

pub fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_env("CHORUS_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            args.validate()?;
            crate::node::serve(*args).await
        }
        Command::Migrate(db) => {
            let database = db.database()?;
            crate::node::open_store(&database).await?;
            crate::node::open_read_db(&database).await?;
            println!("migrations applied");
            Ok(())
        }
        Command::Projections { command } => match command {
            ProjectionsCommand::Status(db) => {
                crate::node::projections_status(&db.database()?).await
            }
            ProjectionsCommand::Rebuild { name, db } => {
                crate::node::projections_rebuild(&db.database()?, &name).await
            }
        },
    }
}
