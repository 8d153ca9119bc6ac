//! The one retry policy. Every retry in tollgate goes through [`retry`] with one of the named
//! [`Policy`]s below; the AWS SDK clients make a single attempt per call (their own retries are
//! off, see `tollgate_aws::sdk`) under an attempt timeout, so retries never nest and each
//! policy's budget is the real bound on how long a call can take: at most `budget` plus one
//! attempt timeout.
//!
//! Delays are exponential with full jitter (the AWS Architecture Blog's recommendation), and
//! never run past the budget.

use std::future::Future;
use std::time::Duration;
use tokio::time::Instant;

/// How a kind of call is retried.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Policy {
    /// Named in the log lines of its retries.
    pub name: &'static str,
    /// First delay ceiling; doubles per attempt.
    pub base: Duration,
    /// Largest delay ceiling.
    pub cap: Duration,
    /// No attempt starts after this much time since the first.
    pub budget: Duration,
    /// Most attempts, the first included.
    pub max_attempts: u32,
}

impl Policy {
    /// The same policy with another time budget (a setting such as `TOLLGATE_COMMIT_RETRY_MS`).
    pub const fn with_budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// The same policy making one attempt only.
    pub const fn once(mut self) -> Self {
        self.max_attempts = 1;
        self
    }
}

/// A group commit of the request log (its budget is `TOLLGATE_COMMIT_RETRY_MS`).
pub const COMMIT: Policy = Policy {
    name: "group commit",
    base: Duration::from_millis(20),
    cap: Duration::from_secs(1),
    budget: Duration::from_secs(5),
    max_attempts: u32::MAX,
};

/// A Data API read or update outside the group commit (request reads, marking rows audited,
/// the reconciler's scan, migrations). The budget covers an Aurora Serverless v2 cluster
/// resuming from auto-pause (`DatabaseResumingException`; AWS documents resumes of about 15 s).
pub const DATA_API: Policy = Policy {
    name: "Data API call",
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
    budget: Duration::from_secs(30),
    max_attempts: u32::MAX,
};

/// An S3 conditional put that met a concurrent conditional write (409
/// `ConditionalRequestConflict`: S3 asks for a retry).
pub const S3_CONFLICT: Policy = Policy {
    name: "S3 conditional put",
    base: Duration::from_millis(50),
    cap: Duration::from_secs(1),
    budget: Duration::from_secs(10),
    max_attempts: 5,
};

/// Handing an audit batch to the writer with an async invoke (the reconciler re-drives
/// whatever is not handed off).
pub const AUDIT_HANDOFF: Policy = Policy {
    name: "audit batch hand-off",
    base: Duration::from_millis(100),
    cap: Duration::from_secs(2),
    budget: Duration::from_secs(10),
    max_attempts: 4,
};

/// Delay before retry `attempt` (0-based): uniform in `[0, min(cap, base * 2^attempt)]`.
pub fn full_jitter(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let ceiling = base.saturating_mul(1u32 << attempt.min(16)).min(cap);
    let r = (uuid::Uuid::new_v4().as_u128() % 1_000_000) as u32;
    ceiling.mul_f64(f64::from(r) / 1_000_000.0)
}

/// Runs `call` until it succeeds, fails with an error `retryable` refuses, or the policy runs
/// out (attempts or budget); returns the last result.
pub async fn retry<T, E, F, Fut>(policy: &Policy, retryable: impl Fn(&E) -> bool, mut call: F) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        let result = call().await;
        let e = match result {
            Err(e) if retryable(&e) => e,
            other => return other,
        };
        attempt = attempt.saturating_add(1);
        let elapsed = started.elapsed();
        if attempt >= policy.max_attempts || elapsed >= policy.budget {
            return Err(e);
        }
        // The wait never runs past the budget: a last attempt may start at its edge, none after.
        let delay = full_jitter(attempt - 1, policy.base, policy.cap).min(policy.budget - elapsed);
        tracing::warn!(policy = policy.name, attempt, error = %e, delay_ms = delay.as_millis() as u64, "retrying");
        tokio::time::sleep(delay).await;
        if started.elapsed() > policy.budget {
            return Err(e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[test]
    fn stays_under_the_cap() {
        for attempt in 0..40 {
            let d = full_jitter(attempt, Duration::from_millis(50), Duration::from_secs(2));
            assert!(d <= Duration::from_secs(2));
            assert!(d <= Duration::from_millis(50) * (1 << attempt.min(16)));
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_budget_bounds_the_retries() {
        let calls = AtomicU32::new(0);
        let policy = COMMIT.with_budget(Duration::from_millis(300));
        let started = tokio::time::Instant::now();
        let r: Result<(), String> = retry(
            &policy,
            |_| true,
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await; // one attempt
                Err("down".to_string())
            },
        )
        .await;
        assert!(r.is_err());
        // No attempt starts after the budget: the whole call ends within budget + one attempt.
        assert!(
            started.elapsed() <= Duration::from_millis(310),
            "{:?}",
            started.elapsed()
        );
        assert!(calls.load(Ordering::Relaxed) > 1);
    }

    #[tokio::test(start_paused = true)]
    async fn attempts_and_classification_end_it_early() {
        let calls = AtomicU32::new(0);
        let r: Result<(), String> = retry(
            &S3_CONFLICT,
            |_| true,
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err("conflict".to_string())
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), S3_CONFLICT.max_attempts);
        calls.store(0, Ordering::Relaxed);
        let r: Result<(), String> = retry(
            &DATA_API,
            |e: &String| e != "fatal",
            || async {
                calls.fetch_add(1, Ordering::Relaxed);
                Err("fatal".to_string())
            },
        )
        .await;
        assert!(r.is_err());
        assert_eq!(calls.load(Ordering::Relaxed), 1, "a refused error is not retried");
        let r: Result<u8, String> = retry(&DATA_API.once(), |_| true, || async { Ok(7) }).await;
        assert_eq!(r, Ok(7));
    }
}
