//! Limits and usage per API key, enforced by every router without a database.
//!
//! Each router counts what it serves for each key (requests, prompt and completion tokens,
//! errors, requests in flight) over calendar windows in UTC (the minute, hour and day, and the
//! key's whole life), and publishes its counts once a second as a [`UsageRecord`] replicated to
//! every router like any other record. A request is admitted when this router's own counts
//! (exact) plus the other routers' published counts stay within the key's limits:
//!
//! - requests per minute and tokens per minute, over the current calendar minute;
//! - concurrent requests, over requests in flight (another router's figure counts while its
//!   record is under 10 s old, so a router that died frees its share);
//! - a token budget over the key's life.
//!
//! The tolerance is what other routers admitted since their last record reached this one:
//! about one publication interval plus gossip's propagation (1-2 s). With R routers and a key
//! sending at rate q per second spread over them, the overshoot is at most about q x 2 s; a
//! single router is exact. Tokens are counted when a request ends, so a request admitted under
//! the token limits may take the key past them; the next is refused. The windows are calendar
//! windows (the minute from :00 to :59), the same on every router with synchronised clocks.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::{ApiError, Fault};
use crate::keys::KeyLimits;
use crate::metrics::Metrics;
use crate::records::{now_millis, now_secs, Body, Record, Records, UsageRecord, Window};

/// How often a router publishes its counts when they changed.
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// Another router's in-flight figure counts while its record is younger than this.
const IN_FLIGHT_FRESH_SECS: u64 = 10;

/// This router's counters and the view of everyone's.
pub struct Quotas {
    router: String,
    records: Records,
    metrics: Arc<Metrics>,
    own: Mutex<HashMap<String, Own>>,
    dirty: AtomicBool,
}

struct Own {
    usage: UsageRecord,
    /// Seconds since the epoch of the last change (published with the record).
    updated: u64,
}

/// Starts of the windows that contain `now`.
fn starts(now: u64) -> [u64; 3] {
    [now - now % 60, now - now % 3600, now - now % 86_400]
}

impl UsageRecord {
    /// The same counts with every window moved to the ones containing `now`.
    fn rolled(&self, now: u64) -> UsageRecord {
        let [minute, hour, day] = starts(now);
        UsageRecord {
            minute: self.minute.at(minute),
            hour: self.hour.at(hour),
            day: self.day.at(day),
            ..self.clone()
        }
    }

    fn windows_mut(&mut self) -> [&mut Window; 4] {
        [
            &mut self.minute,
            &mut self.hour,
            &mut self.day,
            &mut self.total,
        ]
    }
}

/// Everyone's counts for one key at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub in_flight: u64,
    pub minute: Window,
    pub hour: Window,
    pub day: Window,
    pub total: Window,
}

/// Which limit refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    RequestsPerMinute,
    TokensPerMinute,
    Concurrency,
    Budget,
}

impl Limit {
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::RequestsPerMinute => "requests_per_minute",
            Limit::TokensPerMinute => "tokens_per_minute",
            Limit::Concurrency => "max_concurrent",
            Limit::Budget => "token_budget",
        }
    }
}

/// A request admitted for a key: ends the request's share when dropped or finished, and
/// carries the rate-limit headers of its response.
pub struct Admitted {
    quotas: Arc<Quotas>,
    key_id: String,
    finished: bool,
    pub headers: Vec<(&'static str, String)>,
}

impl Admitted {
    /// The request ended having used these tokens; `failed` when it ended in an error.
    pub fn finish(mut self, prompt_tokens: u64, completion_tokens: u64, failed: bool) {
        self.finished = true;
        self.quotas
            .ended(&self.key_id, prompt_tokens, completion_tokens, failed);
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        if !self.finished {
            self.quotas.ended(&self.key_id, 0, 0, true);
        }
    }
}

/// `N` seconds as OpenAI writes reset times (`"12s"`).
fn secs(n: u64) -> String {
    format!("{n}s")
}

impl Quotas {
    pub fn new(router: String, records: Records, metrics: Arc<Metrics>) -> Self {
        Quotas {
            router,
            records,
            metrics,
            own: Mutex::new(HashMap::new()),
            dirty: AtomicBool::new(false),
        }
    }

    fn usage_id(&self, key_id: &str) -> String {
        format!("{key_id}@{}", self.router)
    }

    /// Runs `f` on this router's counters for `key_id`, rolled to `now`. A key this router has
    /// not counted yet starts from its own last published record (a restart keeps the totals).
    fn with_own<T>(&self, key_id: &str, now: u64, f: impl FnOnce(&mut UsageRecord) -> T) -> T {
        let mut own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        let entry = own.entry(key_id.to_string()).or_insert_with(|| {
            let usage = self
                .records
                .usage(key_id)
                .into_iter()
                .find(|u| u.router == self.router)
                .map(|u| UsageRecord { in_flight: 0, ..u })
                .unwrap_or_else(|| UsageRecord {
                    key_id: key_id.to_string(),
                    router: self.router.clone(),
                    ..UsageRecord::default()
                });
            Own { usage, updated: 0 }
        });
        entry.usage = entry.usage.rolled(now);
        entry.updated = now;
        let result = f(&mut entry.usage);
        self.dirty.store(true, Ordering::Release);
        result
    }

    /// Everyone's counts for `key_id` at `now`: this router's own, exact, and the others' as
    /// last published.
    pub fn summary(&self, key_id: &str, now: u64) -> Summary {
        let mut summary = Summary::default();
        let [minute, hour, day] = starts(now);
        summary.minute.start = minute;
        summary.hour.start = hour;
        summary.day.start = day;
        let mut add = |usage: &UsageRecord, in_flight: u64| {
            let usage = usage.rolled(now);
            summary.in_flight = summary.in_flight.saturating_add(in_flight);
            summary.minute.add(&usage.minute);
            summary.hour.add(&usage.hour);
            summary.day.add(&usage.day);
            summary.total.add(&usage.total);
        };
        let own = {
            let own = self.own.lock().unwrap_or_else(|p| p.into_inner());
            own.get(key_id).map(|o| o.usage.clone())
        };
        let fresh_after = now.saturating_sub(IN_FLIGHT_FRESH_SECS);
        for usage in self.records.usage(key_id) {
            let updated = usage.updated;
            if usage.router == self.router && own.is_some() {
                continue;
            }
            let in_flight = if updated >= fresh_after && usage.router != self.router {
                usage.in_flight
            } else {
                0
            };
            add(&usage, in_flight);
        }
        if let Some(own) = own {
            add(&own, own.in_flight);
        }
        summary
    }

    /// Admits a request of `key_id` under `limits`, or refuses it with a 429 that says which
    /// limit, when to retry, and the `x-ratelimit-*` state.
    pub fn admit(
        self: &Arc<Self>,
        key_id: &str,
        limits: &KeyLimits,
    ) -> Result<Option<Admitted>, ApiError> {
        if limits.is_unlimited() {
            return Ok(None);
        }
        let now = now_secs();
        let used = self.summary(key_id, now);
        let to_next_minute = 60 - now % 60;
        let mut headers = Vec::new();
        if let Some(limit) = limits.requests_per_minute {
            headers.push(("x-ratelimit-limit-requests", limit.to_string()));
            headers.push((
                "x-ratelimit-remaining-requests",
                limit
                    .saturating_sub(used.minute.requests.saturating_add(1))
                    .to_string(),
            ));
            headers.push(("x-ratelimit-reset-requests", secs(to_next_minute)));
        }
        if let Some(limit) = limits.tokens_per_minute {
            headers.push(("x-ratelimit-limit-tokens", limit.to_string()));
            headers.push((
                "x-ratelimit-remaining-tokens",
                limit.saturating_sub(used.minute.tokens()).to_string(),
            ));
            headers.push(("x-ratelimit-reset-tokens", secs(to_next_minute)));
        }
        let over = |limit: Option<u64>, used: u64| limit.is_some_and(|l| used >= l);
        let refused = if over(limits.token_budget, used.total.tokens()) {
            Some((Limit::Budget, None))
        } else if over(limits.requests_per_minute, used.minute.requests) {
            Some((Limit::RequestsPerMinute, Some(to_next_minute)))
        } else if over(limits.tokens_per_minute, used.minute.tokens()) {
            Some((Limit::TokensPerMinute, Some(to_next_minute)))
        } else if over(limits.max_concurrent, used.in_flight) {
            Some((Limit::Concurrency, Some(1)))
        } else {
            None
        };
        if let Some((limit, retry)) = refused {
            self.metrics.key_refused(key_id, limit.as_str());
            let message = match limit {
                Limit::Budget => format!(
                    "this key has used its token budget ({} tokens); ask an admin to raise it",
                    limits.token_budget.unwrap_or_default()
                ),
                Limit::RequestsPerMinute => format!(
                    "this key is limited to {} requests per minute; retry in {to_next_minute}s",
                    limits.requests_per_minute.unwrap_or_default()
                ),
                Limit::TokensPerMinute => format!(
                    "this key is limited to {} tokens per minute; retry in {to_next_minute}s",
                    limits.tokens_per_minute.unwrap_or_default()
                ),
                Limit::Concurrency => format!(
                    "this key may run {} requests at once; retry when one ends",
                    limits.max_concurrent.unwrap_or_default()
                ),
            };
            let mut error = ApiError::new(Fault::RateLimited, message).with_headers(headers);
            if let Some(retry) = retry {
                error = error.with_retry_after(retry);
            }
            return Err(error);
        }
        self.with_own(key_id, now, |usage| {
            usage.in_flight = usage.in_flight.saturating_add(1);
            for window in usage.windows_mut() {
                window.requests = window.requests.saturating_add(1);
            }
        });
        Ok(Some(Admitted {
            quotas: self.clone(),
            key_id: key_id.to_string(),
            finished: false,
            headers,
        }))
    }

    /// Counts a request of a key without limits (usage is kept for every key).
    pub fn count(self: &Arc<Self>, key_id: &str) -> Admitted {
        self.with_own(key_id, now_secs(), |usage| {
            usage.in_flight = usage.in_flight.saturating_add(1);
            for window in usage.windows_mut() {
                window.requests = window.requests.saturating_add(1);
            }
        });
        Admitted {
            quotas: self.clone(),
            key_id: key_id.to_string(),
            finished: false,
            headers: Vec::new(),
        }
    }

    fn ended(&self, key_id: &str, prompt_tokens: u64, completion_tokens: u64, failed: bool) {
        self.metrics
            .key_used(key_id, !failed, prompt_tokens, completion_tokens);
        self.with_own(key_id, now_secs(), |usage| {
            usage.in_flight = usage.in_flight.saturating_sub(1);
            for window in usage.windows_mut() {
                window.prompt_tokens = window.prompt_tokens.saturating_add(prompt_tokens);
                window.completion_tokens =
                    window.completion_tokens.saturating_add(completion_tokens);
                if failed {
                    window.errors = window.errors.saturating_add(1);
                }
            }
        });
    }

    /// This router's changed counts as records (none when nothing changed since the last call).
    pub fn take_changes(&self) -> Vec<Record> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Vec::new();
        }
        let version = now_millis();
        let own = self.own.lock().unwrap_or_else(|p| p.into_inner());
        own.iter()
            .map(|(key_id, own)| Record {
                id: self.usage_id(key_id),
                version,
                body: Body::Usage(UsageRecord {
                    updated: own.updated,
                    ..own.usage.clone()
                }),
            })
            .collect()
    }

    /// Publishes this router's counts every [`PUBLISH_EVERY`] while they change.
    pub async fn publish_forever(self: Arc<Self>) {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        loop {
            tick.tick().await;
            let changes = self.take_changes();
            if !changes.is_empty() {
                self.records.merge(changes);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::RecordStore;

    fn quotas(router: &str, records: &Records) -> Arc<Quotas> {
        Arc::new(Quotas::new(
            router.into(),
            records.clone(),
            Arc::new(Metrics::new()),
        ))
    }

    fn limits(rpm: u64) -> KeyLimits {
        KeyLimits {
            requests_per_minute: Some(rpm),
            ..KeyLimits::default()
        }
    }

    /// Copies what `from` published into `to`, as gossip would.
    fn replicate(from: &Quotas, to: &Records) {
        to.merge(from.take_changes());
    }

    #[test]
    fn requests_per_minute_count_every_routers_share() {
        let (ra, rb) = (
            Arc::new(RecordStore::new(None)),
            Arc::new(RecordStore::new(None)),
        );
        let (a, b) = (quotas("a", &ra), quotas("b", &rb));
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(a.admit("k", &limits(5)).expect("admitted"));
        }
        replicate(&a, &rb);
        for _ in 0..2 {
            held.push(b.admit("k", &limits(5)).expect("admitted"));
        }
        let refused = b
            .admit("k", &limits(5))
            .err()
            .expect("the sixth is refused");
        assert_eq!(refused.fault, Fault::RateLimited);
        assert!(refused.retry_after().is_some_and(|s| (1..=60).contains(&s)));
        assert!(refused
            .headers
            .iter()
            .any(|(n, v)| *n == "x-ratelimit-remaining-requests" && v == "0"));
        // Another key is not affected.
        assert!(b.admit("other", &limits(5)).is_ok());
    }

    #[test]
    fn budgets_and_concurrency() {
        let records = Arc::new(RecordStore::new(None));
        let q = quotas("a", &records);
        let budget = KeyLimits {
            token_budget: Some(100),
            ..KeyLimits::default()
        };
        let first = q.admit("k", &budget).expect("ok").expect("limited");
        first.finish(60, 50, false);
        let refused = q.admit("k", &budget).err().expect("over budget");
        assert!(refused.message.contains("budget"));
        let one_at_a_time = KeyLimits {
            max_concurrent: Some(1),
            ..KeyLimits::default()
        };
        let running = q.admit("c", &one_at_a_time).expect("ok");
        assert!(q.admit("c", &one_at_a_time).is_err());
        drop(running);
        assert!(q.admit("c", &one_at_a_time).is_ok());
        let summary = q.summary("k", now_secs());
        assert_eq!(summary.total.requests, 1);
        assert_eq!(summary.total.tokens(), 110);
    }

    #[test]
    fn a_restarted_router_keeps_its_totals() {
        let records = Arc::new(RecordStore::new(None));
        let before = quotas("a", &records);
        before
            .admit("k", &limits(100))
            .expect("ok")
            .expect("limited")
            .finish(5, 7, false);
        records.merge(before.take_changes());
        let after = quotas("a", &records);
        after
            .admit("k", &limits(100))
            .expect("ok")
            .expect("limited")
            .finish(1, 1, false);
        assert_eq!(after.summary("k", now_secs()).total.tokens(), 14);
        assert_eq!(after.summary("k", now_secs()).total.requests, 2);
    }
}
