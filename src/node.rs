//! Assembling a node: event log, read models, bus, projections, commands and the edge.

use std::sync::Arc;

use anyhow::Context as _;
use domain::SnowflakeGenerator;
use store::DynStore;

use crate::cli::{Database, ServeArgs};

pub async fn open_store(db: &Database) -> anyhow::Result<DynStore> {
    Ok(match db {
        Database::Sqlite(url) => Arc::new(
            store::sqlite::SqliteStore::open(url)
                .await
                .with_context(|| format!("cannot open the SQLite event log at {url}"))?,
        ),
        Database::Postgres(url) => Arc::new(
            store::postgres::PostgresStore::connect(url)
                .await
                .with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?,
        ),
    })
}

pub async fn open_read_db(db: &Database) -> anyhow::Result<projections::ReadDb> {
    let url = match db {
        Database::Sqlite(url) | Database::Postgres(url) => url,
    };
    let read = projections::ReadDb::connect(url)
        .await
        .with_context(|| format!("cannot open the read-model database at {}", redact(url)))?;
    read.migrate()
        .await
        .context("cannot migrate the read models")?;
    Ok(read)
}

/// A URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// Claims a snowflake node id (0-1023) that no other live node holds, with a PostgreSQL
/// session advisory lock kept for the life of the process.
async fn claim_node_id(url: &str) -> anyhow::Result<u16> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .context("cannot connect to PostgreSQL to claim a node id")?;
    for id in 0..1024i32 {
        let (got,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock(1128812370, $1)")
            .bind(id)
            .fetch_one(&mut conn)
            .await?;
        if got {
            // Keep the connection (and so the lock) open until the process exits.
            tokio::spawn(async move {
                let _conn = conn;
                std::future::pending::<()>().await;
            });
            return Ok(id as u16);
        }
    }
    anyhow::bail!("all 1024 node ids are held by running nodes")
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let database = args.db.database()?;
    let store = open_store(&database).await?;
    let read = open_read_db(&database).await?;
    let bus: Arc<dyn bus::Bus> = match &args.nats_url {
        Some(url) => Arc::new(
            bus::NatsBus::connect(url)
                .await
                .with_context(|| format!("cannot connect to NATS at {url}"))?,
        ),
        None => {
            if matches!(database, Database::Postgres(_)) {
                tracing::warn!("PostgreSQL without --nats-url: this node will not see events committed by other nodes until they reach it through the log");
            }
            Arc::new(bus::InProcessBus::new())
        }
    };
    let node_id = match (args.node_id, &database) {
        (Some(id), _) => id,
        (None, Database::Postgres(url)) => claim_node_id(url).await?,
        (None, Database::Sqlite(_)) => 0,
    };
    let ids = Arc::new(SnowflakeGenerator::new(
        (node_id >> 5) as u8,
        (node_id & 31) as u8,
    ));
    let projections = Arc::new(
        projections::Projections::start(store.clone(), read.clone(), Some(bus.clone()))
            .await
            .context("cannot start the projections")?,
    );
    let commands = Arc::new(commands::Commands::new(store.clone(), ids));
    let listener = tokio::net::TcpListener::bind(args.bind)
        .await
        .with_context(|| format!("cannot listen on {}", args.bind))?;
    let addr = listener.local_addr()?;
    let public_ws_url = args
        .public_url
        .clone()
        .unwrap_or_else(|| format!("ws://{addr}"));
    let node_ws_url = args
        .node_url
        .clone()
        .unwrap_or_else(|| public_ws_url.clone());
    let config = gateway::GatewayConfig {
        public_ws_url: public_ws_url.clone(),
        node_ws_url,
        heartbeat_interval: args.heartbeat_interval(),
        voice: Some(args.voice.routing(addr)),
        ..Default::default()
    };
    let state = gateway::AppState {
        commands: commands.clone(),
        projections: projections.clone(),
        db: read.clone(),
        hub: gateway::ws::Hub::new(bus.clone(), store.clone(), read.clone()),
        config: Arc::new(config),
    };
    let app = if args.voice.serves_api() {
        gateway::router(state)
    } else {
        axum::Router::new()
    };
    let app = match args.voice.serves_voice() {
        true => app.merge(crate::voice::start(&args.voice, addr, commands, bus.clone()).await?),
        false => app,
    };
    let shape = match (&database, &args.nats_url) {
        (Database::Sqlite(_), _) => "embedded (SQLite, in-process bus)",
        (Database::Postgres(_), Some(_)) => "cluster (PostgreSQL, NATS)",
        (Database::Postgres(_), None) => "PostgreSQL, in-process bus",
    };
    // Tests and scripts read this line to find the port.
    println!("chorus listening on http://{addr} (API http://{addr}/api/v10, gateway {public_ws_url}); node {node_id}, {shape}");
    tracing::info!(%addr, node_id, shape, "listening");
    // `gateway::serve` gives each request its peer address (requests without a token are
    // rate limited per client address) and sets TCP_NODELAY on accepted connections.
    gateway::serve(listener, app, shutdown_signal())
        .await
        .context("server failed")?;
    tracing::info!("shutting down");
    match Arc::try_unwrap(projections) {
        Ok(p) => p.shutdown().await,
        Err(_) => tracing::debug!("projections still referenced at shutdown"),
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

pub async fn projections_status(database: &Database) -> anyhow::Result<()> {
    let store = open_store(database).await?;
    let read = open_read_db(database).await?;
    let rows = projections::status(store.as_ref(), &read).await?;
    println!(
        "{:<16} {:>12} {:>12} {:>10}",
        "PROJECTION", "POSITION", "HEAD", "LAG"
    );
    for r in rows {
        println!(
            "{:<16} {:>12} {:>12} {:>10}",
            r.name, r.position, r.head, r.lag
        );
    }
    Ok(())
}

pub async fn projections_rebuild(database: &Database, name: &str) -> anyhow::Result<()> {
    let store = open_store(database).await?;
    let read = open_read_db(database).await?;
    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} rebuilding {msg} [{bar:40}] {pos}/{len} events ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(name.to_owned());
    let report = projections::rebuild(store.as_ref(), &read, name, |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    })
    .await?;
    bar.finish_and_clear();
    println!(
        "rebuilt {} from {} events in {:.1?}: tables {} now at position {}",
        report.name,
        report.events,
        report.elapsed,
        report.tables.join(", "),
        report.position
    );
    Ok(())
}
