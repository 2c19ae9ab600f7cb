//! The real worker as a `WorkerPort`: commands through its handle, events from its channel.

use tokio::sync::mpsc::UnboundedReceiver;

use super::runner::WorkerPort;
use super::BenchError;
use crate::worker::{Command, Event, WorkerHandle};

pub struct WorkerChannels {
    handle: WorkerHandle,
    events: UnboundedReceiver<Event>,
}

impl WorkerChannels {
    /// Starts a worker thread with the real model loader.
    pub fn spawn() -> Result<Self, BenchError> {
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        let handle = crate::worker::spawn(tx)
            .map_err(|e| BenchError::Input(format!("cannot start the worker thread: {e}")))?;
        Ok(Self { handle, events })
    }

    pub fn new(handle: WorkerHandle, events: UnboundedReceiver<Event>) -> Self {
        Self { handle, events }
    }
}

impl WorkerPort for WorkerChannels {
    fn send(&mut self, command: Command) -> Result<(), BenchError> {
        if self.handle.send(command) {
            Ok(())
        } else {
            Err(BenchError::WorkerGone)
        }
    }

    /// Blocks the calling thread (not for use inside an async task).
    fn recv(&mut self) -> Result<Event, BenchError> {
        self.events.blocking_recv().ok_or(BenchError::WorkerGone)
    }
}
