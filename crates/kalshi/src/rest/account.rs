//! The account's rate limits: the write bucket's size, read from the exchange, so that the
//! client's budget bursts as far as the exchange's does and no further.

use super::{Bill, RestClient};
use crate::error::ExchangeError;
use crate::op::Op;
use crate::wire;

/// The most seconds of burst believed from an answer: the exchange documents one or two, and a
/// larger figure is more likely a misreading than a gift.
const MAX_BURST_S: f64 = 10.0;

/// The write bucket's burst in seconds of budget (`bucket_capacity / refill_rate`, which does
/// not depend on the unit either is given in), when the answer gives both as positive numbers.
pub fn write_burst_seconds(limits: &wire::AccountLimits) -> Option<f64> {
    let w = limits.write?;
    let (rate, capacity) = (w.refill_rate?, w.bucket_capacity?);
    (rate.is_finite() && capacity.is_finite() && rate > 0.0 && capacity > 0.0)
        .then(|| (capacity / rate).min(MAX_BURST_S))
}

impl RestClient {
    /// `GET /account/limits` (read budget).
    pub async fn account_limits(&self) -> Result<wire::AccountLimits, ExchangeError> {
        self.get_json(Op::GetAccountLimits.as_str(), "/account/limits", Bill::Read)
            .await
    }

    /// Sizes the write budget's bucket as the exchange sizes the account's Write bucket (two
    /// seconds of budget above the Basic tier, one at Basic). Until an answer gives the size,
    /// the bucket holds one second, the least the exchange gives: a kill may then take longer
    /// than the exchange would allow, but never draws a 429 for a burst the exchange never had.
    /// The configured rate is kept; a rate above the account's is reported.
    pub async fn fit_write_budget(&self) {
        let limits = match self.account_limits().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, burst_s = ?self.write.burst(), "cannot read the account's rate limits; the write budget keeps its burst");
                return;
            }
        };
        let tier = limits.usage_tier.as_deref().unwrap_or("?");
        let Some(burst) = write_burst_seconds(&limits) else {
            tracing::info!(tier, burst_s = ?self.write.burst(), "the account's limits do not give the write bucket's size; the write budget keeps its burst");
            return;
        };
        let before = self.write.burst();
        self.write.set_burst(burst);
        // Tokens a second at 10 a request (the tier tables' unit).
        let account_rate = limits.write.and_then(|w| w.refill_rate).map(|r| r / 10.0);
        if let (Some(ours), Some(theirs)) = (self.write.rate(), account_rate)
            && ours > theirs * 1.001
        {
            tracing::warn!(
                tier,
                write_budget_per_s = ours,
                account_writes_per_s = theirs,
                "the write budget is above the account's write rate (at 10 tokens a request): expect 429s when the daemon writes at full rate"
            );
        }
        if before != Some(burst) {
            tracing::info!(
                tier,
                burst_s = burst,
                "write budget sized to the account's write bucket"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(json: &str) -> wire::AccountLimits {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn the_burst_is_capacity_over_rate_whatever_the_unit() {
        let advanced = limits(
            r#"{"usage_tier":"advanced","write":{"refill_rate":300,"bucket_capacity":600}}"#,
        );
        assert_eq!(write_burst_seconds(&advanced), Some(2.0));
        let in_requests = limits(r#"{"write":{"refill_rate":10,"bucket_capacity":10}}"#);
        assert_eq!(write_burst_seconds(&in_requests), Some(1.0));
    }

    #[test]
    fn an_answer_without_a_usable_write_bucket_gives_no_burst() {
        for json in [
            r#"{"usage_tier":"basic"}"#,
            r#"{"write":{"refill_rate":100}}"#,
            r#"{"write":{"refill_rate":0,"bucket_capacity":100}}"#,
            r#"{"write":{"refill_rate":100,"bucket_capacity":-1}}"#,
        ] {
            assert_eq!(write_burst_seconds(&limits(json)), None, "{json}");
        }
        let huge = limits(r#"{"write":{"refill_rate":1,"bucket_capacity":1000}}"#);
        assert_eq!(write_burst_seconds(&huge), Some(MAX_BURST_S));
    }
}
