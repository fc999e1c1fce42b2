//! [`NatsBus`]: core NATS publish/subscribe, for the cluster deployment shape.

use std::time::Duration;

use async_nats::{Client, ConnectOptions, Event};
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;

use crate::subjects::{validate_pattern, validate_subject};
use crate::{BoxError, Bus, BusError, BusMessage, BusSubscription};

/// A [`Bus`] over core NATS (not JetStream): at-most-once, ordered per publisher.
///
/// Each gateway node holds one connection and one subscription per pattern it needs.
/// The client reconnects by itself after the first successful connection; messages
/// published while disconnected are buffered by the client up to a limit, and messages
/// sent to this node while it was away are lost (gateways backfill from the log).
///
/// Cloning gives another handle to the same connection.
#[derive(Clone, Debug)]
pub struct NatsBus {
    client: Client,
}

impl NatsBus {
    /// Connects to the NATS server(s) at `url` (for example `nats://127.0.0.1:4222`, or
    /// several comma-separated addresses), logging connection events with `tracing`.
    ///
    /// Fails with [`BusError::Connect`] if no server can be reached (the connect attempt
    /// times out after a few seconds); it does not retry.
    pub async fn connect(url: &str) -> Result<Self, BusError> {
        let options = ConnectOptions::new()
            .name("chorus")
            .event_callback(|event| async move { log_event(event) });
        Self::connect_with_options(url, options).await
    }

    /// Connects to `url` with client options chosen by the caller (credentials, TLS,
    /// buffer sizes).
    pub async fn connect_with_options(
        url: &str,
        options: ConnectOptions,
    ) -> Result<Self, BusError> {
        let client = options
            .connect(url)
            .await
            .map_err(|source| BusError::Connect {
                url: url.to_owned(),
                source: Box::new(source),
            })?;
        tracing::debug!(url, "connected to NATS");
        Ok(NatsBus { client })
    }

    /// Wraps an existing client.
    pub fn from_client(client: Client) -> Self {
        NatsBus { client }
    }

    /// The underlying client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// How long [`try_flush`](Self::try_flush) waits for the server's echo.
    pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

    /// Waits until the server has processed everything this client sent before the
    /// call: every subscription is live and every message has been routed.
    ///
    /// `Client::flush` only writes the client's buffer to the socket, which is not
    /// enough for another node's messages to reach a subscription made just before. So
    /// this publishes a message to a fresh inbox it subscribes to itself and waits for
    /// the echo; the server handles a connection's operations in order, so the echo
    /// comes back only after everything sent earlier. This needs the connection's echo
    /// option (on by default) and fails with [`BusError::Flush`] after
    /// [`Self::FLUSH_TIMEOUT`] without it, or while the server is unreachable.
    pub async fn try_flush(&self) -> Result<(), BusError> {
        let flush_error = |source: BoxError| BusError::Flush { source };
        let inbox = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| flush_error(Box::new(e)))?;
        self.client
            .publish(inbox, Bytes::new())
            .await
            .map_err(|e| flush_error(Box::new(e)))?;
        self.client
            .flush()
            .await
            .map_err(|e| flush_error(Box::new(e)))?;
        let outcome = tokio::time::timeout(Self::FLUSH_TIMEOUT, echo.next()).await;
        // Best effort: dropping the subscriber would unsubscribe as well.
        let _ = echo.unsubscribe().await;
        match outcome {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(flush_error("the connection closed before the echo".into())),
            Err(_) => Err(flush_error(
                format!(
                    "no echo from the server within {:?} (disconnected, or echo disabled)",
                    Self::FLUSH_TIMEOUT
                )
                .into(),
            )),
        }
    }
}

fn log_event(event: Event) {
    match event {
        Event::Connected => tracing::info!("NATS connection established"),
        Event::SlowConsumer(sid) => {
            tracing::warn!(sid, "NATS subscription is not keeping up; messages dropped")
        }
        other => tracing::warn!(event = %other, "NATS connection event"),
    }
}

#[async_trait]
impl Bus for NatsBus {
    async fn publish(&self, subject: &str, payload: Bytes) -> Result<(), BusError> {
        validate_subject(subject)?;
        self.client
            .publish(subject.to_owned(), payload)
            .await
            .map_err(|source| BusError::Publish {
                subject: subject.to_owned(),
                source: Box::new(source),
            })
    }

    async fn subscribe(&self, pattern: &str) -> Result<BusSubscription, BusError> {
        validate_pattern(pattern)?;
        let subscriber = self
            .client
            .subscribe(pattern.to_owned())
            .await
            .map_err(|source| BusError::Subscribe {
                pattern: pattern.to_owned(),
                source: Box::new(source),
            })?;
        let stream = subscriber.map(|message| BusMessage {
            subject: message.subject.to_string(),
            payload: message.payload,
        });
        Ok(BusSubscription::from_stream(pattern, stream))
    }

    async fn flush(&self) {
        if let Err(error) = self.try_flush().await {
            tracing::warn!(%error, "NATS flush failed");
        }
    }
}
