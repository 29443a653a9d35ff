//! The one retry layer for exchange calls, over REST or FIX alike.
//!
//! - A call that is idempotent in effect (reads, reset, trigger, limit, delete) is retried on
//!   any retryable error (429, 5xx, transport, a FIX session down or slow).
//! - A call that is not (create) is retried only while the failed attempt certainly did
//!   nothing; when its outcome is unknown the caller settles it by listing.
//! - A call made once (`Repeat::Never`: its caller is the retry layer, as the daemon is for
//!   Trigger) is not retried here.
//! - A signature that aged past the exchange's window on the way proves nothing was applied:
//!   the call is signed afresh and sent again at once, without a pause (once for any call, and
//!   again within the attempts of one that may repeat).
//! - A delete (`gone_ok`) that finds the group gone after an attempt whose outcome was unknown
//!   has done its job: that attempt deleted it.
//!
//! Pauses follow one [`RetryPolicy`]: exponential from `initial`, capped at `max`, full jitter.

use std::future::Future;
use std::time::Duration;

use crate::error::ExchangeError;

/// Backoff between attempts: exponential from `initial`, capped at `max`, with full jitter.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    pub attempts: u32,
    pub initial: Duration,
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::DEFAULT
    }
}

impl RetryPolicy {
    /// Six attempts, pauses from 50 ms up to 2 s.
    pub const DEFAULT: RetryPolicy = RetryPolicy {
        attempts: 6,
        initial: Duration::from_millis(50),
        max: Duration::from_secs(2),
    };

    /// The pause before attempt `n` (1-based retry count): uniform in `[0, min(max, initial·2ⁿ)]`.
    pub fn delay(&self, n: u32) -> Duration {
        let cap = self.initial.saturating_mul(1u32 << n.min(16)).min(self.max);
        cap.mul_f64(fastrand::f64())
    }
}

/// Whether a call may be repeated when its outcome is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Idempotent in effect: retried on any retryable error.
    Safe,
    /// Not idempotent (create): retried only while the exchange certainly did not apply it.
    OnlyIfNotApplied,
    /// One attempt: the caller retries (and may stop when retrying no longer makes sense).
    Never,
}

/// Runs `attempt(n)` (n counts the calls from 0) until it succeeds or retrying cannot help, by the rules
/// above. `gone` is what a delete returns when the group is found gone after an unclear attempt.
pub async fn with_retries<T, F, Fut>(
    op: &'static str,
    policy: &RetryPolicy,
    repeat: Repeat,
    gone: Option<fn() -> T>,
    mut attempt: F,
) -> Result<T, ExchangeError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, ExchangeError>>,
{
    let mut n = 0;
    let mut unclear = false;
    let mut resigned = false;
    let mut calls = 0;
    loop {
        let made = attempt(calls).await;
        calls += 1;
        let err = match made {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        if let Some(gone) = gone
            && unclear
            && err.is_not_found()
        {
            return Ok(gone());
        }
        unclear |= err.outcome_unknown();
        let expired = err.is_timestamp_expired();
        if expired && !resigned {
            resigned = true;
            tracing::warn!(op, "signature expired on the way; signing afresh");
            continue;
        }
        n += 1;
        if expired && repeat != Repeat::Never && n < policy.attempts {
            tracing::warn!(op, attempt = n, "signature expired again; signing afresh");
            continue;
        }
        let may_retry = err.is_retryable()
            && match repeat {
                Repeat::Safe => true,
                Repeat::OnlyIfNotApplied => !err.outcome_unknown(),
                Repeat::Never => false,
            };
        if !may_retry || n >= policy.attempts {
            return Err(err);
        }
        tracing::debug!(op, attempt = n, error = %err, "retrying exchange call");
        tokio::time::sleep(policy.delay(n)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn answer(status: u16, body: &str) -> ExchangeError {
        ExchangeError::from_response("op", status, body.as_bytes())
    }

    /// Runs `with_retries` over scripted answers (the last one repeats); returns the result,
    /// how many attempts were made, and how long the pauses took on the paused clock.
    async fn run(
        repeat: Repeat,
        gone: Option<fn() -> &'static str>,
        script: Vec<Result<&'static str, ExchangeError>>,
    ) -> (Result<&'static str, ExchangeError>, u32, Duration) {
        let made = Cell::new(0u32);
        let started = tokio::time::Instant::now();
        let r = with_retries("op", &RetryPolicy::default(), repeat, gone, |n| {
            made.set(made.get() + 1);
            let r = script[(n as usize).min(script.len() - 1)].clone();
            async move { r }
        })
        .await;
        (r, made.get(), started.elapsed())
    }

    #[tokio::test(start_paused = true)]
    async fn a_safe_call_is_retried_until_it_succeeds_or_attempts_run_out() {
        let (r, made, _) = run(Repeat::Safe, None, vec![Err(answer(503, "")), Ok("done")]).await;
        assert_eq!((r.ok(), made), (Some("done"), 2));
        let (r, made, _) = run(Repeat::Safe, None, vec![Err(answer(500, ""))]).await;
        assert_eq!(r.unwrap_err().status(), Some(500));
        assert_eq!(made, RetryPolicy::default().attempts);
        let (r, made, _) = run(Repeat::Safe, None, vec![Err(answer(400, ""))]).await;
        assert!(r.is_err());
        assert_eq!(made, 1, "a 4xx is not retried");
    }

    #[tokio::test(start_paused = true)]
    async fn a_create_is_not_repeated_once_its_outcome_is_unknown() {
        let (r, made, _) = run(Repeat::OnlyIfNotApplied, None, vec![Err(answer(502, ""))]).await;
        assert!(r.unwrap_err().outcome_unknown());
        assert_eq!(made, 1);
        let script = vec![Err(answer(429, "")), Ok("created")];
        let (r, made, _) = run(Repeat::OnlyIfNotApplied, None, script).await;
        assert_eq!(
            (r.ok(), made),
            (Some("created"), 2),
            "a 429 applied nothing"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn gone_after_an_unclear_attempt_is_done_and_only_then() {
        let gone: Option<fn() -> &'static str> = Some(|| "gone");
        let script = vec![Err(answer(500, "")), Err(answer(404, ""))];
        let (r, _, _) = run(Repeat::Safe, gone, script).await;
        assert_eq!(r.ok(), Some("gone"));
        let script = vec![Err(answer(429, "")), Err(answer(404, ""))];
        let (r, _, _) = run(Repeat::Safe, gone, script).await;
        assert!(r.unwrap_err().is_not_found(), "nothing unclear came before");
    }

    #[tokio::test(start_paused = true)]
    async fn an_expired_signature_is_sent_again_at_once() {
        let expired = answer(401, r#"{"error":{"code":"header_timestamp_expired"}}"#);
        let script = vec![Err(expired.clone()), Ok("ok")];
        let (r, made, paused) = run(Repeat::OnlyIfNotApplied, None, script).await;
        assert_eq!((r.ok(), made), (Some("ok"), 2));
        assert_eq!(paused, Duration::ZERO);
        let script = vec![Err(expired.clone()), Ok("ok")];
        let (r, made, _) = run(Repeat::Never, None, script).await;
        assert_eq!((r.ok(), made), (Some("ok"), 2), "even a call made once");
        let (r, made, _) = run(Repeat::Never, None, vec![Err(expired)]).await;
        assert!(r.unwrap_err().is_timestamp_expired());
        assert_eq!(
            made, 2,
            "once, not for ever (a skewed clock fails every signature)"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_call_made_once_is_not_retried_here() {
        let (r, made, _) = run(Repeat::Never, None, vec![Err(answer(503, ""))]).await;
        assert_eq!(r.unwrap_err().status(), Some(503));
        assert_eq!(made, 1);
    }
}
