//! Exponential backoff with full jitter (the AWS Architecture Blog's recommendation), for
//! retries against throttled or failing backends.

use std::time::Duration;

/// Delay before retry `attempt` (0-based): uniform in `[0, min(cap, base * 2^attempt)]`.
pub fn full_jitter(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let r = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u32;
    ceiling.mul_f64(f64::from(r) / 1_000_000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_under_the_cap() {
        for attempt in 0..40 {
            let d = full_jitter(attempt, Duration::from_millis(50), Duration::from_secs(2));
            assert!(d <= Duration::from_secs(2));
            assert!(d <= Duration::from_millis(50) * (1 << attempt.min(16)));
        }
    }
}
