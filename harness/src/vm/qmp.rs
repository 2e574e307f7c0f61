//! QMP through the `qapi` crate, behind a thin wrapper.
//!
//! qapi decodes every line into its generated message enum, so an event name newer than its schema
//! ends its stream. This wrapper therefore reads the socket itself: every line goes to the transcript,
//! every event (known or not) becomes a [`QmpEvent`], and only the greeting and command replies are
//! forwarded to qapi, which then never sees an event at all.

use qapi::futures::{QapiService, QmpStreamTokio};
use std::io::Write;
use std::path::Path;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream, WriteHalf};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

#[derive(Debug, Clone, PartialEq)]
pub enum QmpEvent {
    Shutdown {
        guest: bool,
        reason: String,
    },
    Reset {
        guest: bool,
        reason: String,
    },
    GuestPanicked {
        action: String,
    },
    Other {
        name: String,
        data: serde_json::Value,
    },
}

impl QmpEvent {
    fn from_json(v: &serde_json::Value) -> Option<QmpEvent> {
        let name = v.get("event")?.as_str()?.to_string();
        let data = v.get("data").cloned().unwrap_or(serde_json::Value::Null);
        let s = |k: &str| {
            data.get(k)
                .and_then(|x| x.as_str())
                .unwrap_or("")
                .to_string()
        };
        let b = |k: &str| data.get(k).and_then(|x| x.as_bool()).unwrap_or(false);
        Some(match name.as_str() {
            "SHUTDOWN" => QmpEvent::Shutdown {
                guest: b("guest"),
                reason: s("reason"),
            },
            "RESET" => QmpEvent::Reset {
                guest: b("guest"),
                reason: s("reason"),
            },
            "GUEST_PANICKED" => QmpEvent::GuestPanicked {
                action: s("action"),
            },
            _ => QmpEvent::Other { name, data },
        })
    }
}

type Writer = QmpStreamTokio<WriteHalf<UnixStream>>;

pub struct Qmp {
    service: QapiService<Writer>,
    pub events: mpsc::UnboundedReceiver<QmpEvent>,
}

#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QMP connection: {0}")]
    Io(#[from] std::io::Error),
    #[error("QMP command {command} failed: {message}")]
    Command {
        command: &'static str,
        message: String,
    },
}

impl Qmp {
    /// Negotiates on an accepted connection; `transcript` receives every line QEMU sends.
    pub async fn negotiate(stream: UnixStream, transcript: &Path) -> Result<Qmp, QmpError> {
        let (read, write) = tokio::io::split(stream);
        let (to_qapi, from_filter) = tokio::io::duplex(64 * 1024);
        let (ev_tx, ev_rx) = mpsc::unbounded_channel();
        let log = std::fs::File::create(transcript)?;
        tokio::spawn(filter(BufReader::new(read), to_qapi, ev_tx, log));
        let negotiation = QmpStreamTokio::open_split(from_filter, write).await?;
        let stream = negotiation.negotiate().await?;
        let (service, events) = stream.into_parts();
        // The events half dispatches replies to waiting commands; it must be polled.
        tokio::spawn(async move {
            let _ = events.into_future().await;
        });
        Ok(Qmp {
            service,
            events: ev_rx,
        })
    }

    /// `query-status`: the run state ("running", "paused", "guest-panicked", ...).
    pub async fn status(&self) -> Result<String, QmpError> {
        let s = self.run("query-status", qapi::qmp::query_status {}).await?;
        Ok(serde_json::to_value(s.status)
            .ok()
            .and_then(|v| v.as_str().map(String::from))
            .unwrap_or_default())
    }

    /// `human-monitor-command`: an HMP command's text (the profiler's `info registers`).
    pub async fn hmp(&self, command: &str) -> Result<String, QmpError> {
        let c = qapi::qmp::human_monitor_command {
            command_line: command.to_string(),
            cpu_index: None,
        };
        self.run("human-monitor-command", c).await
    }

    /// Saves the whole VM to `file` (QEMU migration with `mapped-ram`: every page at a fixed offset,
    /// so the file is sparse where guest memory was never touched) and waits until it is written.
    /// The VM is left paused: migration always stops the source.
    pub async fn save_to(&self, file: &Path) -> Result<(), QmpError> {
        self.mapped_ram().await?;
        self.run(
            "migrate",
            qapi::qmp::migrate {
                channels: None,
                detach: None,
                resume: None,
                uri: Some(format!("file:{}", file.display())),
            },
        )
        .await?;
        self.migration_done("migrate").await
    }

    /// Polls `query-migrate` until the migration (either way) has completed or failed.
    async fn migration_done(&self, command: &'static str) -> Result<(), QmpError> {
        use qapi::qmp::MigrationStatus as S;
        loop {
            let info = self
                .run("query-migrate", qapi::qmp::query_migrate {})
                .await?;
            match info.status {
                Some(S::completed) => return Ok(()),
                Some(S::failed | S::cancelled) => {
                    return Err(QmpError::Command {
                        command,
                        message: info.error_desc.unwrap_or_else(|| "failed".into()),
                    });
                }
                _ => tokio::time::sleep(std::time::Duration::from_millis(2)).await,
            }
        }
    }

    /// Loads a VM saved by [`Qmp::save_to`] into this QEMU (started with `-incoming defer`); the
    /// guest runs on when the load completes, which the caller sees through [`Qmp::status`].
    pub async fn load_from(&self, file: &Path) -> Result<(), QmpError> {
        self.mapped_ram().await?;
        self.run(
            "migrate-incoming",
            qapi::qmp::migrate_incoming {
                channels: None,
                exit_on_error: Some(false),
                uri: Some(format!("file:{}", file.display())),
            },
        )
        .await?;
        self.migration_done("migrate-incoming").await
    }

    /// `mapped-ram` on both sides: a file written at page offsets, read without a stream parser.
    async fn mapped_ram(&self) -> Result<(), QmpError> {
        self.run(
            "migrate-set-capabilities",
            qapi::qmp::migrate_set_capabilities {
                capabilities: vec![qapi::qmp::MigrationCapabilityStatus {
                    capability: qapi::qmp::MigrationCapability::mapped_ram,
                    state: true,
                }],
            },
        )
        .await
        .map(|_| ())
    }

    async fn run<C: qapi::qmp::QmpCommand>(
        &self,
        command: &'static str,
        c: C,
    ) -> Result<C::Ok, QmpError> {
        self.service
            .execute(c)
            .await
            .map_err(|e| QmpError::Command {
                command,
                message: e.to_string(),
            })
    }

    /// `quit`: QEMU exits at once (the guest is not asked).
    pub async fn quit(&self) -> Result<(), QmpError> {
        self.run("quit", qapi::qmp::quit {}).await.map(|_| ())
    }
}

async fn filter(
    mut read: BufReader<tokio::io::ReadHalf<UnixStream>>,
    mut to_qapi: DuplexStream,
    events: mpsc::UnboundedSender<QmpEvent>,
    mut log: std::fs::File,
) {
    let mut line = String::new();
    loop {
        line.clear();
        match read.read_line(&mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let _ = log.write_all(line.as_bytes());
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if let Some(ev) = QmpEvent::from_json(&v) {
            tracing::debug!(?ev, "QMP event");
            let _ = events.send(ev);
        } else if to_qapi.write_all(line.as_bytes()).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_known_and_unknown_are_decoded() {
        let j = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(
            QmpEvent::from_json(&j(
                r#"{"event":"SHUTDOWN","data":{"guest":true,"reason":"guest-shutdown"},"timestamp":{}}"#
            )),
            Some(QmpEvent::Shutdown {
                guest: true,
                reason: "guest-shutdown".into()
            })
        );
        assert_eq!(
            QmpEvent::from_json(&j(
                r#"{"event":"GUEST_PANICKED","data":{"action":"exit-failure"}}"#
            )),
            Some(QmpEvent::GuestPanicked {
                action: "exit-failure".into()
            })
        );
        assert!(matches!(
            QmpEvent::from_json(&j(r#"{"event":"FROM_A_FUTURE_QEMU","data":{"x":1}}"#)),
            Some(QmpEvent::Other { name, .. }) if name == "FROM_A_FUTURE_QEMU"
        ));
        assert_eq!(QmpEvent::from_json(&j(r#"{"return":{}}"#)), None);
    }

    /// A fake QEMU on a socket pair: greeting, an unknown event between replies, and the wrapper
    /// still answers commands and reports the event.
    #[tokio::test]
    async fn unknown_event_does_not_end_the_connection() {
        let (ours, mut theirs) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let fake = tokio::spawn(async move {
            let greeting = r#"{"QMP":{"version":{"qemu":{"micro":2,"minor":0,"major":10},"package":""},"capabilities":[]}}"#;
            theirs
                .write_all(format!("{greeting}\n").as_bytes())
                .await
                .unwrap();
            let mut r = BufReader::new(&mut theirs);
            let mut l = String::new();
            r.read_line(&mut l).await.unwrap(); // qmp_capabilities
            theirs.write_all(b"{\"return\":{}}\n").await.unwrap();
            theirs.write_all(b"{\"event\":\"BRAND_NEW_EVENT\",\"data\":{},\"timestamp\":{\"seconds\":1,\"microseconds\":2}}\n").await.unwrap();
            let mut r = BufReader::new(&mut theirs);
            l.clear();
            r.read_line(&mut l).await.unwrap(); // query-status
            theirs.write_all(b"{\"return\":{\"status\":\"running\",\"running\":true,\"singlestep\":false}}\n").await.unwrap();
            theirs
        });
        let mut qmp = Qmp::negotiate(ours, &dir.path().join("qmp.jsonl"))
            .await
            .unwrap();
        assert_eq!(qmp.status().await.unwrap(), "running");
        assert!(
            matches!(qmp.events.recv().await, Some(QmpEvent::Other { name, .. }) if name == "BRAND_NEW_EVENT")
        );
        drop(fake.await.unwrap());
        let transcript = std::fs::read_to_string(dir.path().join("qmp.jsonl")).unwrap();
        assert!(transcript.contains("BRAND_NEW_EVENT"));
    }
}
