//! The life of a replica, shared by the tensor [`Replica`](crate::Replica) and the
//! [`GenerationReplica`](crate::generate::GenerationReplica): a watched state (loading, then
//! ready or failed, then stopped), the flag the worker thread polls to stop, and the signal
//! that the worker has exited and dropped its model.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::watch;

use crate::{ReplicaError, ReplicaState};

#[derive(Debug)]
pub(crate) struct Lifecycle {
    /// The replica's name, in messages and logs.
    pub name: String,
    state: watch::Sender<ReplicaState>,
    /// Set once the worker has returned and dropped the model.
    exited: watch::Sender<bool>,
    stopping: AtomicBool,
}

impl Lifecycle {
    /// A replica that is loading.
    pub fn new(name: String) -> Self {
        let (state, _) = watch::channel(ReplicaState::Loading);
        let (exited, _) = watch::channel(false);
        Self { name, state, exited, stopping: AtomicBool::new(false) }
    }

    pub fn state(&self) -> ReplicaState {
        self.state.borrow().clone()
    }

    pub fn is_ready(&self) -> bool {
        *self.state.borrow() == ReplicaState::Ready
    }

    /// Moves to `state` unless the replica was stopped meanwhile.
    pub fn set_state(&self, state: ReplicaState) {
        self.state.send_if_modified(|s| {
            if *s == ReplicaState::Stopped {
                return false;
            }
            *s = state;
            true
        });
    }

    /// The error for a request the replica cannot take now, saying why.
    pub fn not_ready(&self) -> ReplicaError {
        let name = &self.name;
        ReplicaError::NotReady(match &*self.state.borrow() {
            ReplicaState::Loading => format!("model '{name}' is still loading"),
            ReplicaState::Failed(reason) => format!("model '{name}' failed: {reason}"),
            ReplicaState::Ready | ReplicaState::Stopped => format!("model '{name}' is stopped"),
        })
    }

    /// Waits until the model is loaded (`Ok`) or failed or stopped (`NotReady` with the reason).
    pub async fn ready(&self) -> Result<(), ReplicaError> {
        let mut state = self.state.subscribe();
        let settled = state.wait_for(|s| *s != ReplicaState::Loading).await.map(|s| s.clone());
        match settled {
            Ok(ReplicaState::Ready) => Ok(()),
            _ => Err(self.not_ready()),
        }
    }

    /// Marks the replica stopped; the worker sees [`Lifecycle::is_stopping`].
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.state.send_replace(ReplicaState::Stopped);
    }

    pub fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Called by the worker as it exits, after dropping the model.
    pub fn mark_exited(&self) {
        self.exited.send_replace(true);
    }

    /// The worker thread could not be started: failed, and nothing will ever run.
    pub fn fail_to_start(&self, error: &std::io::Error) {
        self.set_state(ReplicaState::Failed(format!("cannot start the worker thread: {error}")));
        self.mark_exited();
    }

    /// Waits until the worker has exited and dropped the model.
    pub async fn stopped(&self) {
        let mut exited = self.exited.subscribe();
        // The sender lives in `self`: this cannot fail.
        let _ = exited.wait_for(|done| *done).await;
    }
}
