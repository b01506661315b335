//! The shutdown handle: the caller (the binary's signal handler, or a test) triggers it, the
//! library reacts. The library never installs signal handlers itself.

use tokio_util::sync::CancellationToken;

/// Asks a running server or client to stop. Clones share the same state.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests shutdown; every clone sees it.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Completes when shutdown is requested.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }
}
