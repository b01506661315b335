//! `--max-conn-rate-per-ip`: a token bucket per client address, checked at accept before
//! anything else is spent on the client, so a flood of connects from one address costs a
//! hash lookup each.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, PoisonError};

use tokio::time::Instant;

/// Addresses remembered before idle ones (whose bucket has refilled) are forgotten.
const PRUNE_AT: usize = 4096;

/// New connections allowed per address and second, with a burst of as many.
#[derive(Debug)]
pub(super) struct ConnectionRate {
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl ConnectionRate {
    /// A limit of `per_second` new connections per address (at least 1).
    pub fn new(per_second: u32) -> Self {
        ConnectionRate { per_second: f64::from(per_second.max(1)), buckets: Mutex::default() }
    }

    /// Takes one connection from `address`'s budget; false when it has none left.
    pub fn admit(&self, address: IpAddr) -> bool {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if buckets.len() >= PRUNE_AT {
            let full = |b: &Bucket| b.tokens + self.refill(b, now) >= self.per_second;
            buckets.retain(|_, bucket| !full(bucket));
        }
        let bucket =
            buckets.entry(address.to_canonical()).or_insert(Bucket { tokens: self.per_second, updated: now });
        bucket.tokens = (bucket.tokens + self.refill(bucket, now)).min(self.per_second);
        bucket.updated = now;
        if bucket.tokens < 1.0 {
            return false;
        }
        bucket.tokens -= 1.0;
        true
    }

    fn refill(&self, bucket: &Bucket, now: Instant) -> f64 {
        now.saturating_duration_since(bucket.updated).as_secs_f64() * self.per_second
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_burst_then_the_rate() {
        let rate = ConnectionRate::new(5);
        let a: IpAddr = "127.0.0.2".parse().expect("address");
        let b: IpAddr = "::ffff:127.0.0.3".parse().expect("address");
        assert_eq!((0..7).filter(|_| rate.admit(a)).count(), 5, "a burst of 5");
        assert!(rate.admit(b), "another address has its own budget");
        tokio::time::advance(Duration::from_millis(400)).await;
        assert_eq!((0..7).filter(|_| rate.admit(a)).count(), 2, "2 more after 0.4 s at 5/s");
        assert!(rate.admit("127.0.0.3".parse().expect("address")), "mapped and plain IPv4 share a bucket");
    }
}
