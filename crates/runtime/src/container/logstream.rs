//! Copying a container's output into a log file in the runtime's format (`out`/`err` lines),
//! through Docker's logs endpoint. A [`LogCursor`] remembers Docker's timestamp of the last
//! line copied, so following the same container again (after a restart of it, of the daemon
//! or of the agent) neither repeats nor skips lines.

use std::sync::{Arc, Mutex};

use bollard::container::LogOutput;
use bollard::query_parameters::LogsOptions;
use futures_util::StreamExt;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::logread::Stream;
use crate::logs::{write_shared, SharedLog};
use crate::oneshot::Tail;

use super::ContainerRuntime;

/// The Docker timestamp of the last line copied.
#[derive(Clone, Default)]
pub(crate) struct LogCursor(Arc<Mutex<Option<OffsetDateTime>>>);

impl LogCursor {
    pub(crate) fn starting_at(t: OffsetDateTime) -> LogCursor {
        LogCursor(Arc::new(Mutex::new(Some(t))))
    }

    fn get(&self) -> Option<OffsetDateTime> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set(&self, t: OffsetDateTime) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(t);
    }
}

/// Where copied lines go.
#[derive(Clone, Default)]
pub(crate) struct LogSink {
    pub log: Option<SharedLog>,
    /// Collects the combined output too (one-off jobs).
    pub tail: Option<Arc<Mutex<Tail>>>,
}

impl LogSink {
    pub(crate) fn line(&self, stream: Stream, text: &str) {
        if let Some(log) = &self.log {
            write_shared(log, stream, text);
        }
        if let Some(tail) = &self.tail {
            tail.lock().unwrap_or_else(|e| e.into_inner()).push(text);
        }
    }

    pub(crate) fn sys(&self, text: &str) {
        if let Some(log) = &self.log {
            write_shared(log, Stream::System, text);
        }
    }
}

impl ContainerRuntime {
    /// Follows the output of `container` from the cursor on until the container stops (or
    /// the connection breaks); returns whether the stream ended normally.
    pub(crate) async fn follow_output(
        &self,
        container: &str,
        cursor: &LogCursor,
        sink: &LogSink,
    ) -> bool {
        let since = cursor.get();
        let options = LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: since.map_or(0, |t| t.unix_timestamp().clamp(0, i32::MAX as i64) as i32),
            ..Default::default()
        };
        let mut stream = self.docker().logs(container, Some(options));
        while let Some(item) = stream.next().await {
            let (stream_kind, bytes) = match item {
                Ok(LogOutput::StdOut { message }) => (Stream::Out, message),
                Ok(LogOutput::StdErr { message }) => (Stream::Err, message),
                Ok(LogOutput::Console { message }) => (Stream::Out, message),
                Ok(LogOutput::StdIn { .. }) => continue,
                Err(err) => {
                    tracing::debug!(container, error = %err, "log stream ended");
                    return false;
                }
            };
            let text = String::from_utf8_lossy(&bytes);
            for entry in text.split_inclusive('\n') {
                let entry = entry.strip_suffix('\n').unwrap_or(entry);
                let entry = entry.strip_suffix('\r').unwrap_or(entry);
                let (ts, line) = match entry.split_once(' ') {
                    Some((ts, line)) => (OffsetDateTime::parse(ts, &Rfc3339).ok(), line),
                    None => (OffsetDateTime::parse(entry, &Rfc3339).ok(), ""),
                };
                if let (Some(ts), Some(last)) = (ts, cursor.get()) {
                    if ts <= last {
                        continue;
                    }
                }
                if let Some(ts) = ts {
                    cursor.set(ts);
                }
                sink.line(stream_kind, line);
            }
        }
        true
    }
}
