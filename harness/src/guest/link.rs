//! The agent's connection: JSON lines each way, every line also written to the transcript
//! (`agent.jsonl`, timed). Reading is bounded, so a kernel that scribbles on the port cannot grow
//! the runner's memory, and cancel-safe, so a reader raced against QEMU's exit loses nothing.

use std::io::Write;
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// The longest line accepted from the agent. Its largest replies are the kernel log and a
/// program's output; anything longer is not the agent talking.
pub const MAX_LINE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("reading from the agent: {0}")]
    Io(#[from] std::io::Error),
    #[error("a line from the agent is longer than {MAX_LINE} bytes")]
    TooLong,
    #[error("a line from the agent is not UTF-8 (at byte {0})")]
    NotUtf8(usize),
}

/// Splits a byte stream into bounded UTF-8 lines: pure, so the fuzz tests feed it directly.
pub struct Lines {
    max: usize,
    partial: Vec<u8>,
}

impl Lines {
    /// Lines of at most `max` bytes before their newline.
    pub fn new(max: usize) -> Lines {
        Lines {
            max,
            partial: Vec::new(),
        }
    }

    /// Takes bytes from the front of `buf`, up to and including the first newline; returns how
    /// many it took, and the line (newline included) if one ended. A line past the limit takes
    /// all of `buf` and is an error: nothing of it is kept.
    pub fn feed(&mut self, buf: &[u8]) -> (usize, Option<Result<String, LinkError>>) {
        let (take, complete) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if self.partial.len() + take > self.max + 1 {
            self.partial.clear();
            return (buf.len(), Some(Err(LinkError::TooLong)));
        }
        self.partial.extend_from_slice(&buf[..take]);
        if !complete {
            return (take, None);
        }
        let bytes = std::mem::take(&mut self.partial);
        let line =
            String::from_utf8(bytes).map_err(|e| LinkError::NotUtf8(e.utf8_error().valid_up_to()));
        (take, Some(line))
    }
}

pub struct AgentLink {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    transcript: std::fs::File,
    started: Instant,
    lines: Lines,
}

impl AgentLink {
    pub fn new(stream: UnixStream, transcript: std::fs::File, started: Instant) -> AgentLink {
        let (r, w) = stream.into_split();
        AgentLink {
            reader: BufReader::new(r),
            writer: w,
            transcript,
            started,
            lines: Lines::new(MAX_LINE),
        }
    }

    pub async fn send(&mut self, line: &str) -> std::io::Result<()> {
        self.log('>', line);
        self.writer.write_all(line.as_bytes()).await
    }

    /// The next line without its newline; `None` when the agent's end closed.
    pub async fn read_line(&mut self) -> Result<Option<String>, LinkError> {
        loop {
            let buf = self.reader.fill_buf().await?;
            if buf.is_empty() {
                return Ok(None);
            }
            let (taken, line) = self.lines.feed(buf);
            self.reader.consume(taken);
            if let Some(line) = line {
                let line = line?;
                self.log('<', &line);
                return Ok(Some(line.trim_end().to_string()));
            }
        }
    }

    fn log(&mut self, dir: char, line: &str) {
        let ms = self.started.elapsed().as_secs_f64() * 1000.0;
        let _ = write!(self.transcript, "{ms:10.3} {dir} {line}");
        if !line.ends_with('\n') {
            let _ = writeln!(self.transcript);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn link() -> (AgentLink, UnixStream, tempfile::TempDir) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let t = std::fs::File::create(dir.path().join("t.jsonl")).unwrap();
        (AgentLink::new(ours, t, Instant::now()), theirs, dir)
    }

    #[tokio::test]
    async fn lines_are_split_and_logged_and_eof_is_none() {
        let (mut l, mut peer, dir) = link().await;
        peer.write_all(b"{\"a\":1}\n{\"b\"").await.unwrap();
        peer.write_all(b":2}\n").await.unwrap();
        drop(peer);
        assert_eq!(l.read_line().await.unwrap().as_deref(), Some("{\"a\":1}"));
        assert_eq!(l.read_line().await.unwrap().as_deref(), Some("{\"b\":2}"));
        assert!(l.read_line().await.unwrap().is_none());
        let t = std::fs::read_to_string(dir.path().join("t.jsonl")).unwrap();
        assert_eq!(t.lines().count(), 2);
    }

    #[tokio::test]
    async fn an_endless_line_is_refused_without_holding_it() {
        let (mut l, mut peer, _dir) = link().await;
        let writer = tokio::spawn(async move {
            let chunk = vec![b'x'; 1 << 20];
            for _ in 0..(MAX_LINE >> 20) + 2 {
                if peer.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            peer
        });
        assert!(matches!(l.read_line().await, Err(LinkError::TooLong)));
        assert!(l.lines.partial.capacity() <= MAX_LINE + (1 << 20) + 1);
        drop(l);
        let _ = writer.await;
    }

    #[tokio::test]
    async fn bytes_that_are_not_utf8_are_an_error_with_their_offset() {
        let (mut l, mut peer, _dir) = link().await;
        peer.write_all(b"ok\xff\n").await.unwrap();
        assert!(matches!(l.read_line().await, Err(LinkError::NotUtf8(2))));
    }
}
