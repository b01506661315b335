//! The queue between connections and the sink's writer, bounded twice: by batches (a channel)
//! and by bytes (a budget checked before a connection reads). Many small records (an echo or
//! chat server's) fit, while the bytes in flight stay bounded whatever the batches' size.
//!
//! The byte check happens before the read that produces a batch, so only the batches being
//! rendered at that moment can overshoot the budget: at most one per worker thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::sync::mpsc::error::{SendError, TryRecvError, TrySendError};
use tokio::sync::mpsc::{self, OwnedPermit, Permit};

/// Bytes queued and the most allowed, shared by both ends.
#[derive(Debug)]
struct Budget {
    queued: AtomicUsize,
    limit: usize,
    /// Signalled by the writer after every write.
    drained: Notify,
}

impl Budget {
    fn has_room(&self) -> bool {
        self.queued.load(Ordering::Acquire) < self.limit
    }

    fn add(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::AcqRel);
    }

    /// Completes once the queue is under its byte limit.
    async fn room(&self) {
        crate::notify::until(&self.drained, || self.has_room()).await;
    }
}

/// A queue of at most `depth` batches and about `byte_limit` bytes.
pub fn queue(depth: usize, byte_limit: usize) -> (RecordSender, RecordReceiver) {
    let (tx, rx) = mpsc::channel(depth);
    let budget = Arc::new(Budget { queued: AtomicUsize::new(0), limit: byte_limit, drained: Notify::new() });
    (RecordSender { tx, budget: Arc::clone(&budget) }, RecordReceiver { rx, budget })
}

/// The sending half: cheap to clone, one per producer.
#[derive(Clone, Debug)]
pub struct RecordSender {
    tx: mpsc::Sender<Vec<u8>>,
    budget: Arc<Budget>,
}

impl RecordSender {
    /// Bytes queued for the writer now.
    pub fn queued_bytes(&self) -> usize {
        self.budget.queued.load(Ordering::Relaxed)
    }

    /// Room for one batch now: `Full` when the queue is over either bound, `Closed` when the
    /// writer has stopped.
    pub fn try_reserve(&self) -> Result<Reservation<'_>, TrySendError<()>> {
        if !self.budget.has_room() {
            return Err(if self.tx.is_closed() { TrySendError::Closed(()) } else { TrySendError::Full(()) });
        }
        let permit = self.tx.try_reserve()?;
        Ok(Reservation { permit, budget: &self.budget })
    }

    /// Waits for room for one batch.
    pub async fn reserve_owned(self) -> Result<OwnedReservation, SendError<()>> {
        tokio::select! {
            _ = self.budget.room() => {}
            _ = self.tx.closed() => return Err(SendError(())),
        }
        let permit = self.tx.reserve_owned().await?;
        Ok(OwnedReservation { permit, budget: self.budget })
    }

    /// Queues a batch, waiting for room.
    pub async fn send(&self, batch: Vec<u8>) -> Result<(), SendError<Vec<u8>>> {
        tokio::select! {
            _ = self.budget.room() => {}
            _ = self.tx.closed() => return Err(SendError(batch)),
        }
        let permit = match self.tx.reserve().await {
            Ok(permit) => permit,
            Err(_) => return Err(SendError(batch)),
        };
        Reservation { permit, budget: &self.budget }.send(batch);
        Ok(())
    }

    /// Queues a small batch (a connection's last records, a refusal) if there is a slot; the
    /// byte budget is not checked, these are a few hundred bytes at most.
    pub fn try_send(&self, batch: Vec<u8>) -> Result<(), TrySendError<Vec<u8>>> {
        let len = batch.len();
        self.tx.try_send(batch)?;
        self.budget.add(len);
        Ok(())
    }
}

/// A slot reserved in the queue.
pub struct Reservation<'a> {
    permit: Permit<'a, Vec<u8>>,
    budget: &'a Budget,
}

impl Reservation<'_> {
    /// Queues the batch in the reserved slot.
    pub fn send(self, batch: Vec<u8>) {
        self.budget.add(batch.len());
        self.permit.send(batch);
    }
}

/// A slot reserved in the queue, not tied to a borrow of the sender.
pub struct OwnedReservation {
    permit: OwnedPermit<Vec<u8>>,
    budget: Arc<Budget>,
}

impl OwnedReservation {
    /// Queues the batch in the reserved slot.
    pub fn send(self, batch: Vec<u8>) {
        self.budget.add(batch.len());
        self.permit.send(batch);
    }
}

/// The writer's half.
#[derive(Debug)]
pub struct RecordReceiver {
    rx: mpsc::Receiver<Vec<u8>>,
    budget: Arc<Budget>,
}

impl RecordReceiver {
    /// The next batch, waiting for one; `None` once every sender is gone.
    pub fn blocking_recv(&mut self) -> Option<Vec<u8>> {
        self.rx.blocking_recv()
    }

    /// The next batch if one is queued.
    pub fn try_recv(&mut self) -> Result<Vec<u8>, TryRecvError> {
        self.rx.try_recv()
    }

    /// Refuses further batches (the writer failed).
    pub fn close(&mut self) {
        self.rx.close();
        self.budget.drained.notify_waiters();
    }

    /// Gives back the budget of `bytes` just written.
    pub fn written(&self, bytes: usize) {
        self.budget.queued.fetch_sub(bytes, Ordering::AcqRel);
        self.budget.drained.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bytes_bound_the_queue_as_well_as_batches() {
        let (tx, mut rx) = queue(100, 10);
        tx.try_reserve().expect("room").send(vec![0; 8]);
        tx.try_reserve().expect("still under 10 bytes").send(vec![0; 8]);
        assert!(matches!(tx.try_reserve(), Err(TrySendError::Full(()))), "16 bytes queued: over the limit");
        let waiting = tokio::spawn(tx.clone().reserve_owned());
        let first = rx.try_recv().expect("a batch");
        rx.written(first.len());
        let second = rx.try_recv().expect("a batch");
        rx.written(second.len());
        let reservation = waiting.await.expect("task").expect("room again");
        reservation.send(vec![1]);
        assert_eq!(rx.try_recv().expect("a batch"), [1]);
    }
}
