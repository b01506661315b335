//! Waiting for a condition that another task signals through a `tokio::sync::Notify`.

use tokio::sync::Notify;

/// Completes once `done()` holds, re-checking each time `notify` wakes its waiters. The
/// waiter is registered before the check, so a wake-up between check and wait is not lost.
pub async fn until(notify: &Notify, done: impl Fn() -> bool) {
    loop {
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if done() {
            return;
        }
        notified.await;
    }
}
