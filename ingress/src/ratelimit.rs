//! Per-route rate limits: a token bucket per (route, principal or client IP), in memory.
//!
//! The limit is per ingress task: with N tasks a client can get up to N times the rate. The
//! template's optional WAF rate-based rule is the fleet-wide limit.
//!
//! A bucket holds `burst` tokens and refills at `rate_per_sec`; a request takes one token or is
//! refused. Buckets live in shards (a mutex each, chosen by a keyed hash so a client cannot pick
//! its shard), so checks on different keys rarely wait for each other. An existing key is found
//! by `&str` without allocating; only a new key allocates its copy.
//!
//! Keys are what the ingress derived, not raw client text: a verified principal id, or the
//! client IP. For IPv6 the caller should key by the /64 prefix, since one client usually holds a
//! whole /64 (RFC 6177 recommends assigning at least that much to an end site) and could
//! otherwise get a fresh bucket per address.
//!
//! Memory is bounded by a cap on buckets per shard. A bucket that has refilled completely holds
//! no information (a new bucket starts full), so those go first; see [`RateLimiter::check`] for
//! what happens when none has.

use http::{HeaderName, HeaderValue};
use std::borrow::Borrow;
use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards of a limiter built by [`RateLimiter::new`].
pub const DEFAULT_SHARDS: usize = 32;
/// Most buckets a limiter built by [`RateLimiter::new`] keeps (about 100 bytes each plus the key).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// A route's limit: `burst` requests at once, refilled at `rate_per_sec`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePolicy {
    /// Tokens added per second.
    pub rate_per_sec: f64,
    /// Bucket size: the most requests accepted at once after a quiet period.
    pub burst: u32,
}

/// Why a rate policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RatePolicyError {
    /// Not `<count>/<unit>`.
    #[error("rate {0:?}: expected <count>/<unit>, such as \"100/s\", \"6000/min\" or \"10/h\"")]
    Shape(String),
    /// The count is not a whole number of at least 1.
    #[error("rate {0:?}: the count must be a whole number of at least 1")]
    Count(String),
    /// The unit is not one of s, min, h, d.
    #[error("rate {0:?}: unknown unit {1:?} (use s, min, h or d)")]
    Unit(String, String),
    /// `burst` is below 1 or above `u32::MAX`.
    #[error("burst {0}: must be a whole number from 1 to {max}", max = u32::MAX)]
    Burst(i64),
}

impl RatePolicy {
    /// A policy from a rate such as `"100/s"`, `"6000/min"`, `"10/h"` or `"1000/d"` and a burst
    /// (as read from TOML, hence signed, so that a negative one is reported rather than wrapped).
    pub fn parse(rate: &str, burst: i64) -> Result<Self, RatePolicyError> {
        let rate_per_sec = Self::parse_rate(rate)?;
        let burst = u32::try_from(burst)
            .ok()
            .filter(|b| *b >= 1)
            .ok_or(RatePolicyError::Burst(burst))?;
        Ok(Self { rate_per_sec, burst })
    }

    /// Tokens per second from `"<count>/<unit>"`.
    pub fn parse_rate(rate: &str) -> Result<f64, RatePolicyError> {
        let (count, unit) = rate
            .split_once('/')
            .ok_or_else(|| RatePolicyError::Shape(rate.to_string()))?;
        let count: u32 = count
            .trim()
            .parse()
            .ok()
            .filter(|c| *c >= 1)
            .ok_or_else(|| RatePolicyError::Count(rate.to_string()))?;
        let seconds = match unit.trim() {
            "s" | "sec" | "second" => 1.0,
            "min" | "minute" => 60.0,
            "h" | "hour" => 3600.0,
            "d" | "day" => 86_400.0,
            other => return Err(RatePolicyError::Unit(rate.to_string(), other.to_string())),
        };
        Ok(f64::from(count) / seconds)
    }

    /// Seconds an empty bucket takes to fill (at least 1): the window of `RateLimit-Policy`.
    pub fn window_secs(&self) -> u64 {
        ceil_secs(f64::from(self.burst) / self.rate_per_sec)
    }
}

impl fmt::Display for RatePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/s, burst {}", self.rate_per_sec, self.burst)
    }
}

/// The answer to one check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may go on (it took a token).
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u32,
    /// Seconds until a token is available, rounded up: 0 when one is now, else at least 1
    /// (the `Retry-After` of a refusal).
    pub retry_after_secs: u64,
    /// Seconds until the bucket is full again, rounded up (0 when it is).
    pub reset_secs: u64,
    /// The policy's burst (the quota of `RateLimit-Policy`).
    pub quota: u32,
    /// The policy's window in seconds (see [`RatePolicy::window_secs`]).
    pub window_secs: u64,
}

/// Token buckets keyed by route index and principal id or client IP; see the module docs.
pub struct RateLimiter {
    shards: Box<[Mutex<Shard>]>,
    /// Keyed with random keys per process (SipHash), so which shard a key lands in cannot be
    /// chosen by a client.
    shard_hasher: RandomState,
    max_keys_per_shard: usize,
    limiting_evictions: AtomicU64,
}

type Shard = HashMap<BucketKey, Bucket>;

#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    /// From when the bucket holds a whole token again (it refuses before).
    token_at: Instant,
    /// When the bucket is full if nothing takes from it: past this it holds no information.
    full_at: Instant,
}

impl Bucket {
    fn refuses_at(&self, now: Instant) -> bool {
        now < self.token_at
    }
}

impl RateLimiter {
    /// A limiter of [`DEFAULT_SHARDS`] shards keeping at most about `max_keys` buckets.
    pub fn new(max_keys: usize) -> Self {
        Self::with_shards(DEFAULT_SHARDS, max_keys.div_ceil(DEFAULT_SHARDS))
    }

    /// A limiter of `shards` shards (at least 1) of at most `max_keys_per_shard` buckets (at
    /// least 1) each.
    pub fn with_shards(shards: usize, max_keys_per_shard: usize) -> Self {
        Self {
            shards: (0..shards.max(1)).map(|_| Mutex::new(Shard::new())).collect(),
            shard_hasher: RandomState::new(),
            max_keys_per_shard: max_keys_per_shard.max(1),
            limiting_evictions: AtomicU64::new(0),
        }
    }

    /// Takes a token from the bucket of `(route, key)` under `policy` at `now`, creating a full
    /// bucket for a new key. `now` may be earlier than a previous check's (threads race between
    /// reading the clock and taking the lock): time then simply does not advance.
    ///
    /// At the cap, a new key first drops every bucket of its shard that is full. If none is, it
    /// drops a sixteenth of the shard (so the scan is paid once per many new keys): buckets that
    /// would still allow a request before those that would refuse one, and among each the ones
    /// idle longest. Only when every bucket in the shard is refusing does a refusing bucket go;
    /// its client then gets a fresh burst. [`RateLimiter::limiting_evictions`] counts those:
    /// above zero, the cap is too small for the number of clients being limited at once.
    pub fn check(&self, route: usize, key: &str, policy: &RatePolicy, now: Instant) -> RateDecision {
        let shard = &self.shards[self.shard_of(route, key)];
        // A panic cannot leave a bucket half-updated (each update is plain arithmetic on
        // `Copy` fields), so a poisoned lock's data is still sound.
        let mut buckets = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let view: &dyn KeyView = &(route, key);
        let bucket = match buckets.get_mut(view) {
            Some(bucket) => bucket,
            None => {
                if buckets.len() >= self.max_keys_per_shard {
                    self.make_room(&mut buckets, now);
                }
                let full = Bucket {
                    tokens: f64::from(policy.burst),
                    updated: now,
                    token_at: now,
                    full_at: now,
                };
                buckets.entry(BucketKey::new(route, key)).or_insert(full)
            }
        };
        take(bucket, policy, now)
    }

    /// Drops every bucket that is full at `now` (for a periodic sweep); returns how many.
    pub fn evict_full(&self, now: Instant) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut buckets = shard.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let before = buckets.len();
            buckets.retain(|_, b| b.full_at > now);
            dropped += before - buckets.len();
        }
        dropped
    }

    /// Buckets held.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len())
            .sum()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buckets dropped while refusing requests because their shard was full of such buckets.
    pub fn limiting_evictions(&self) -> u64 {
        self.limiting_evictions.load(Ordering::Relaxed)
    }

    /// The `RateLimit-Policy` and `RateLimit` fields for a decision, in the structured-field
    /// form of draft-ietf-httpapi-ratelimit-headers-10 (September 2025): a quoted policy name with `q` (quota) and `w` (window, seconds) for
    /// `RateLimit-Policy`, and `r` (remaining) and `t` (seconds until reset) for `RateLimit`:
    /// `RateLimit-Policy: "<name>";q=<quota>;w=<window>`, `RateLimit: "<name>";r=<remaining>;t=<reset>`. For a token bucket the quota is the burst and the window the seconds it takes
    /// to fill; `t` is the seconds until it is full again. `policy_name` is written as an sf-string
    /// (RFC 9651 section 3.3.3): `"` and `\` escaped, anything but printable ASCII as `?`.
    pub fn headers(&self, policy_name: &str, decision: &RateDecision) -> [(HeaderName, HeaderValue); 2] {
        let name = sf_string(policy_name);
        let policy = format!("{name};q={};w={}", decision.quota, decision.window_secs);
        let state = format!("{name};r={};t={}", decision.remaining, decision.reset_secs);
        [
            (HeaderName::from_static("ratelimit-policy"), header_value(policy)),
            (HeaderName::from_static("ratelimit"), header_value(state)),
        ]
    }

    fn shard_of(&self, route: usize, key: &str) -> usize {
        (self.shard_hasher.hash_one((route, key)) % self.shards.len() as u64) as usize
    }

    fn make_room(&self, buckets: &mut Shard, now: Instant) {
        buckets.retain(|_, b| b.full_at > now);
        if buckets.len() < self.max_keys_per_shard {
            return;
        }
        let batch = (self.max_keys_per_shard / 16).max(1);
        // (refusing now, last used): the smallest go first.
        let mut order: Vec<(bool, Instant)> = buckets.values().map(|b| (b.refuses_at(now), b.updated)).collect();
        let (_, &mut cutoff, _) = order.select_nth_unstable(batch - 1);
        let mut dropped = 0;
        let mut limiting = 0;
        buckets.retain(|_, b| {
            let rank = (b.refuses_at(now), b.updated);
            if dropped < batch && rank <= cutoff {
                dropped += 1;
                limiting += u64::from(rank.0);
                false
            } else {
                true
            }
        });
        if limiting > 0 {
            self.limiting_evictions.fetch_add(limiting, Ordering::Relaxed);
        }
    }
}

impl fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimiter")
            .field("shards", &self.shards.len())
            .field("max_keys_per_shard", &self.max_keys_per_shard)
            .finish_non_exhaustive()
    }
}

fn take(bucket: &mut Bucket, policy: &RatePolicy, now: Instant) -> RateDecision {
    let burst = f64::from(policy.burst);
    let rate = policy.rate_per_sec;
    let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
    let mut tokens = (bucket.tokens + elapsed * rate).min(burst);
    let allowed = tokens >= 1.0;
    if allowed {
        tokens -= 1.0;
    }
    let updated = bucket.updated.max(now);
    let until_token = (1.0 - tokens).max(0.0) / rate;
    let until_full = (burst - tokens).max(0.0) / rate;
    *bucket = Bucket {
        tokens,
        updated,
        token_at: later(updated, until_token),
        full_at: later(updated, until_full),
    };
    RateDecision {
        allowed,
        remaining: tokens.floor() as u32,
        retry_after_secs: if until_token > 0.0 { ceil_secs(until_token) } else { 0 },
        reset_secs: if until_full > 0.0 { ceil_secs(until_full) } else { 0 },
        quota: policy.burst,
        window_secs: policy.window_secs(),
    }
}

/// `seconds` after `at`; far enough in the future when that is beyond what `Instant` holds.
fn later(at: Instant, seconds: f64) -> Instant {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .and_then(|d| at.checked_add(d))
        .unwrap_or(at + Duration::from_secs(100 * 365 * 86_400))
}

/// Whole seconds, rounded up, at least 1 (float-to-int casts saturate, so huge values are
/// `u64::MAX`).
fn ceil_secs(seconds: f64) -> u64 {
    (seconds.ceil() as u64).max(1)
}

fn sf_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            ' '..='~' => out.push(c),
            _ => out.push('?'),
        }
    }
    out.push('"');
    out
}

fn header_value(text: String) -> HeaderValue {
    // Built from printable ASCII only (`sf_string` and integers), which is always a valid value.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static("\"invalid\""))
}

/// A bucket's key: the route index and an owned copy of the principal id or client IP.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BucketKey {
    route: usize,
    key: Box<str>,
}

impl BucketKey {
    fn new(route: usize, key: &str) -> Self {
        Self { route, key: key.into() }
    }
}

/// A key as looked up: lets the map find `(route, &str)` without building a `BucketKey`
/// (the `Borrow<dyn Trait>` pattern; `HashMap::get` needs `K: Borrow<Q>`). Its `Hash` must
/// equal `BucketKey`'s derived one: the route, then the key.
trait KeyView {
    fn route(&self) -> usize;
    fn key(&self) -> &str;
}

impl KeyView for BucketKey {
    fn route(&self) -> usize {
        self.route
    }
    fn key(&self) -> &str {
        &self.key
    }
}

impl KeyView for (usize, &str) {
    fn route(&self) -> usize {
        self.0
    }
    fn key(&self) -> &str {
        self.1
    }
}

impl<'a> Borrow<dyn KeyView + 'a> for BucketKey {
    fn borrow(&self) -> &(dyn KeyView + 'a) {
        self
    }
}

impl Hash for dyn KeyView + '_ {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.route().hash(state);
        self.key().hash(state);
    }
}

impl PartialEq for dyn KeyView + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.route() == other.route() && self.key() == other.key()
    }
}

impl Eq for dyn KeyView + '_ {}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    fn policy(rate: &str, burst: i64) -> RatePolicy {
        RatePolicy::parse(rate, burst).unwrap()
    }

    fn at(t0: Instant, millis: u64) -> Instant {
        t0 + Duration::from_millis(millis)
    }

    #[test]
    fn rates_parse_in_every_unit() {
        assert_eq!(
            policy("100/s", 200),
            RatePolicy {
                rate_per_sec: 100.0,
                burst: 200
            }
        );
        assert_eq!(policy("6000/min", 1).rate_per_sec, 100.0);
        assert_eq!(policy(" 10 / h ", 1).rate_per_sec, 10.0 / 3600.0);
        assert_eq!(policy("86400/d", 1).rate_per_sec, 1.0);
        assert_eq!(policy("5/second", 1).rate_per_sec, 5.0);
    }

    #[test]
    fn nonsense_policies_are_refused_with_a_reason() {
        let cases: [(&str, i64, &str); 10] = [
            ("0/s", 1, "at least 1"),
            ("-5/s", 1, "at least 1"),
            ("1.5/s", 1, "whole number"),
            ("abc/s", 1, "whole number"),
            ("100", 1, "expected <count>/<unit>"),
            ("", 1, "expected <count>/<unit>"),
            ("100/fortnight", 1, "unknown unit \"fortnight\""),
            ("100/m", 1, "unknown unit \"m\""),
            ("100/s", 0, "burst 0"),
            ("100/s", -3, "burst -3"),
        ];
        for (rate, burst, message) in cases {
            let err = RatePolicy::parse(rate, burst).unwrap_err().to_string();
            assert!(err.contains(message), "{rate} burst {burst}: {err}");
        }
        assert!(RatePolicy::parse("100/s", i64::from(u32::MAX) + 1).is_err());
        assert!(RatePolicy::parse("99999999999/s", 1).is_err());
    }

    #[test]
    fn a_burst_is_allowed_then_the_steady_rate() {
        let limiter = RateLimiter::new(1000);
        let p = policy("10/s", 5);
        let t0 = Instant::now();
        let allowed = (0..8).filter(|_| limiter.check(0, "alice", &p, t0).allowed).count();
        assert_eq!(allowed, 5);
        let refused = limiter.check(0, "alice", &p, t0);
        assert_eq!(
            refused,
            RateDecision {
                allowed: false,
                remaining: 0,
                retry_after_secs: 1,
                reset_secs: 1,
                quota: 5,
                window_secs: 1,
            }
        );
        // One token every 100 ms from then on.
        assert!(limiter.check(0, "alice", &p, at(t0, 100)).allowed);
        assert!(!limiter.check(0, "alice", &p, at(t0, 150)).allowed);
        assert!(limiter.check(0, "alice", &p, at(t0, 200)).allowed);
    }

    #[test]
    fn allowed_requests_over_a_window_stay_within_rate_times_window_plus_burst() {
        let limiter = RateLimiter::new(1000);
        for (rate, burst, window_ms, step_ms) in [
            ("10/s", 20, 10_000, 7),
            ("6000/min", 50, 3_000, 1),
            ("10/h", 3, 7_200_000, 60_000),
        ] {
            let p = policy(rate, burst);
            let t0 = Instant::now();
            let mut allowed = 0u64;
            let mut t = 0;
            while t <= window_ms {
                // Several requests per tick: clients far faster than the rate.
                for _ in 0..3 {
                    allowed += u64::from(limiter.check(1, rate, &p, at(t0, t)).allowed);
                }
                t += step_ms;
            }
            let bound = p.rate_per_sec * window_ms as f64 / 1000.0 + f64::from(p.burst);
            assert!(allowed as f64 <= bound, "{rate}: {allowed} > {bound}");
            // And the limiter does not refuse much more than it must (one tick of slack).
            let floor = p.rate_per_sec * (window_ms - step_ms) as f64 / 1000.0;
            assert!(allowed as f64 >= floor, "{rate}: {allowed} < {floor}");
        }
    }

    #[test]
    fn keys_and_routes_have_their_own_buckets() {
        let limiter = RateLimiter::new(1000);
        let p = policy("1/min", 1);
        let t0 = Instant::now();
        assert!(limiter.check(0, "alice", &p, t0).allowed);
        assert!(!limiter.check(0, "alice", &p, t0).allowed);
        assert!(limiter.check(0, "bob", &p, t0).allowed);
        assert!(limiter.check(1, "alice", &p, t0).allowed);
        assert!(limiter.check(0, "203.0.113.7", &p, t0).allowed);
        assert_eq!(limiter.len(), 4);
    }

    #[test]
    fn an_empty_bucket_refills_to_full_and_reports_when() {
        let limiter = RateLimiter::new(1000);
        let p = policy("2/s", 4);
        let t0 = Instant::now();
        for _ in 0..4 {
            limiter.check(0, "k", &p, t0);
        }
        let refused = limiter.check(0, "k", &p, t0);
        assert!(!refused.allowed);
        assert_eq!((refused.retry_after_secs, refused.reset_secs), (1, 2));
        // 1.25 s later: 2.5 tokens, one taken.
        let later = limiter.check(0, "k", &p, at(t0, 1250));
        assert!(later.allowed);
        assert_eq!((later.remaining, later.retry_after_secs, later.reset_secs), (1, 0, 2));
        // Long after: full, never more than the burst.
        let full = limiter.check(0, "k", &p, at(t0, 60_000));
        assert_eq!((full.remaining, full.reset_secs), (3, 1));
        // A clock reading earlier than the last check does not add or remove tokens.
        let earlier = limiter.check(0, "k", &p, at(t0, 59_000));
        assert_eq!(earlier.remaining, 2);
    }

    #[test]
    fn full_buckets_are_evicted_first_at_the_cap() {
        let limiter = RateLimiter::with_shards(1, 4);
        let p = policy("1/s", 2);
        let t0 = Instant::now();
        limiter.check(0, "limited", &p, t0);
        limiter.check(0, "limited", &p, t0);
        for key in ["a", "b", "c"] {
            limiter.check(0, key, &p, t0);
        }
        assert_eq!(limiter.len(), 4);
        // 1.5 s on, a, b and c are full again; "limited" is not.
        limiter.check(0, "new", &p, at(t0, 1500));
        assert_eq!(limiter.len(), 2);
        let limited = limiter.check(0, "limited", &p, at(t0, 1500));
        assert_eq!(limited.remaining, 0, "the limiting bucket kept its state");
        assert_eq!(limiter.evict_full(at(t0, 10_000)), 2);
        assert!(limiter.is_empty());
    }

    #[test]
    fn at_the_cap_the_longest_idle_allowing_bucket_goes_before_a_refusing_one() {
        let limiter = RateLimiter::with_shards(1, 3);
        let p = policy("1/min", 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            limiter.check(0, "refusing", &p, t0);
        }
        limiter.check(0, "idle", &p, at(t0, 1));
        limiter.check(0, "recent", &p, at(t0, 2));
        limiter.check(0, "new", &p, at(t0, 3));
        assert_eq!(limiter.len(), 3);
        assert!(!limiter.check(0, "refusing", &p, at(t0, 4)).allowed, "still limited");
        assert_eq!(limiter.check(0, "recent", &p, at(t0, 4)).remaining, 1, "kept");
        assert_eq!(limiter.limiting_evictions(), 0);
    }

    #[test]
    fn a_shard_full_of_refusing_buckets_drops_one_and_counts_it() {
        let limiter = RateLimiter::with_shards(1, 2);
        let p = policy("1/h", 1);
        let t0 = Instant::now();
        limiter.check(0, "a", &p, t0);
        limiter.check(0, "b", &p, at(t0, 1));
        assert!(limiter.check(0, "c", &p, at(t0, 2)).allowed);
        assert_eq!(limiter.len(), 2);
        assert_eq!(limiter.limiting_evictions(), 1);
        // The longest idle ("a") went: it gets a fresh burst; "b" is still refused.
        assert!(!limiter.check(0, "b", &p, at(t0, 3)).allowed);
    }

    #[test]
    fn memory_stays_bounded_under_many_new_keys() {
        let limiter = RateLimiter::with_shards(4, 64);
        let p = policy("1/h", 1);
        let t0 = Instant::now();
        for i in 0..10_000u64 {
            limiter.check(0, &format!("198.51.100.{i}"), &p, at(t0, i));
        }
        assert!(limiter.len() <= 4 * 64, "{}", limiter.len());
    }

    #[test]
    fn many_threads_never_get_more_than_the_bound() {
        let limiter = Arc::new(RateLimiter::new(1000));
        let p = policy("100/s", 50);
        let t0 = Instant::now();
        let allowed = Arc::new(AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let (limiter, allowed) = (limiter.clone(), allowed.clone());
                std::thread::spawn(move || {
                    for i in 0..2_000u64 {
                        // Every thread's clock runs over the same 1 s, racing the others.
                        let now = at(t0, (i + thread) / 2);
                        for key in ["shared", "other"] {
                            if limiter.check(3, key, &p, now).allowed && key == "shared" {
                                allowed.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let allowed = allowed.load(Ordering::Relaxed);
        // Clocks go to 1003 ms at most: 100/s * 1.003 s + 50.
        assert!(allowed <= 150, "{allowed}");
        assert!(allowed >= 140, "{allowed}");
    }

    #[test]
    fn concurrent_checks_at_one_instant_allow_exactly_the_burst() {
        let limiter = Arc::new(RateLimiter::new(1000));
        let p = policy("1/h", 37);
        let t0 = Instant::now();
        let allowed: u32 = (0..8)
            .map(|_| {
                let limiter = limiter.clone();
                std::thread::spawn(move || (0..100).filter(|_| limiter.check(0, "k", &p, t0).allowed).count() as u32)
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(allowed, 37);
    }

    #[test]
    fn headers_follow_the_structured_field_forms() {
        let limiter = RateLimiter::new(10);
        let p = policy("100/s", 200);
        let t0 = Instant::now();
        let d = limiter.check(0, "k", &p, t0);
        let [(policy_name, policy_value), (state_name, state_value)] = limiter.headers("default", &d);
        assert_eq!(policy_name.as_str(), "ratelimit-policy");
        assert_eq!(policy_value, "\"default\";q=200;w=2");
        assert_eq!(state_name.as_str(), "ratelimit");
        assert_eq!(state_value, "\"default\";r=199;t=1");
        let [(_, odd), _] = limiter.headers("a\"b\\c\u{e9}\n", &d);
        assert_eq!(odd, "\"a\\\"b\\\\c??\";q=200;w=2");
    }

    #[test]
    fn the_window_is_the_time_to_fill_an_empty_bucket() {
        assert_eq!(policy("100/s", 200).window_secs(), 2);
        assert_eq!(policy("100/s", 1).window_secs(), 1);
        assert_eq!(policy("10/h", 10).window_secs(), 3600);
        assert_eq!(policy("6000/min", 150).window_secs(), 2);
    }
}
