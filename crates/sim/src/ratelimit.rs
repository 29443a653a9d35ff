//! The exchange's token-bucket rate limits: separate Read and Write budgets
//! per account tier, refilled continuously; a request costs 10 tokens unless the exchange lists
//! another cost. Capacity is two seconds of budget for Write above Basic and for Read at Basic
//! and Advanced, one second otherwise. Exceeding it is a 429 with no penalty.
//!
//! Order-group GETs are billed to the **Write** bucket: the docs put "order groups" in Write
//! without saying whether that includes reads, and Write is the budget a risk daemon must guard.

use std::str::FromStr;

use tokio::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Basic,
    Advanced,
    Expert,
    Premier,
    Paragon,
    Prime,
    Prestige,
    /// No limits (benchmarks).
    Unlimited,
}

impl FromStr for Tier {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "basic" => Tier::Basic,
            "advanced" => Tier::Advanced,
            "expert" => Tier::Expert,
            "premier" => Tier::Premier,
            "paragon" => Tier::Paragon,
            "prime" => Tier::Prime,
            "prestige" => Tier::Prestige,
            "unlimited" => Tier::Unlimited,
            other => {
                return Err(format!(
                    "unknown tier {other:?}: expected basic, advanced, expert, premier, paragon, prime, prestige or unlimited"
                ));
            }
        })
    }
}

impl Tier {
    /// The tier's name as the exchange spells it in `usage_tier`.
    pub fn name(self) -> &'static str {
        match self {
            Tier::Basic => "basic",
            Tier::Advanced => "advanced",
            Tier::Expert => "expert",
            Tier::Premier => "premier",
            Tier::Paragon => "paragon",
            Tier::Prime => "prime",
            Tier::Prestige => "prestige",
            Tier::Unlimited => "unlimited",
        }
    }

    /// `(read, write)` refill rates in tokens per second.
    fn rates(self) -> Option<(f64, f64)> {
        Some(match self {
            Tier::Basic => (200.0, 100.0),
            Tier::Advanced => (300.0, 300.0),
            Tier::Expert => (600.0, 600.0),
            Tier::Premier => (1_000.0, 1_000.0),
            Tier::Paragon => (2_000.0, 2_000.0),
            Tier::Prime => (4_000.0, 4_000.0),
            Tier::Prestige => (10_000.0, 8_000.0),
            Tier::Unlimited => return None,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucket {
    Read,
    Write,
}

/// Which bucket a request draws on and what it costs.
pub fn cost(method: &http::Method, path: &str) -> (Bucket, u32) {
    let path = path.split('?').next().unwrap_or(path);
    if path.starts_with("/trade-api/v2/portfolio/order_groups") {
        return (Bucket::Write, 10);
    }
    if *method == http::Method::GET {
        if path.starts_with("/trade-api/v2/portfolio/orders/") {
            return (Bucket::Read, 2);
        }
        return (Bucket::Read, 10);
    }
    (Bucket::Write, 10)
}

/// One bucket's size as `GET /account/limits` reports it: tokens a second, and tokens at most.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BucketLimits {
    pub refill_rate: f64,
    pub bucket_capacity: f64,
}

#[derive(Debug)]
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: f64, capacity_seconds: f64, now: Instant) -> Self {
        let capacity = rate * capacity_seconds;
        TokenBucket {
            rate,
            capacity,
            tokens: capacity,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.last = now;
    }

    fn take(&mut self, cost: f64, now: Instant) -> bool {
        self.refill(now);
        if self.tokens >= cost {
            self.tokens -= cost;
            true
        } else {
            false
        }
    }
}

/// The account's two buckets; `None` for the unlimited tier.
#[derive(Debug)]
pub struct RateLimiter {
    buckets: Option<(TokenBucket, TokenBucket)>,
}

impl RateLimiter {
    pub fn new(tier: Tier, now: Instant) -> Self {
        let buckets = tier.rates().map(|(read, write)| {
            let basic_or_advanced = matches!(tier, Tier::Basic | Tier::Advanced);
            let read_capacity = if basic_or_advanced { 2.0 } else { 1.0 };
            let write_capacity = if tier == Tier::Basic { 1.0 } else { 2.0 };
            (
                TokenBucket::new(read, read_capacity, now),
                TokenBucket::new(write, write_capacity, now),
            )
        });
        RateLimiter { buckets }
    }

    /// `(read, write)` as the account's limits report them; `None` for the unlimited tier.
    pub fn limits(&self) -> Option<(BucketLimits, BucketLimits)> {
        let (read, write) = self.buckets.as_ref()?;
        let limits = |b: &TokenBucket| BucketLimits {
            refill_rate: b.rate,
            bucket_capacity: b.capacity,
        };
        Some((limits(read), limits(write)))
    }

    /// The tokens `bucket` holds at `now`; `None` for the unlimited tier.
    pub fn level(&mut self, bucket: Bucket, now: Instant) -> Option<f64> {
        let (read, write) = self.buckets.as_mut()?;
        let b = match bucket {
            Bucket::Read => read,
            Bucket::Write => write,
        };
        b.refill(now);
        Some(b.tokens)
    }

    /// Takes the request's cost; false means the request is refused with 429.
    pub fn admit(&mut self, bucket: Bucket, cost: u32, now: Instant) -> bool {
        match &mut self.buckets {
            None => true,
            Some((read, write)) => match bucket {
                Bucket::Read => read.take(cost as f64, now),
                Bucket::Write => write.take(cost as f64, now),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn basic_write_allows_ten_writes_then_refills_one_per_tenth_second() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(Tier::Basic, t0);
        for i in 0..10 {
            assert!(rl.admit(Bucket::Write, 10, t0), "write {i}");
        }
        assert!(!rl.admit(Bucket::Write, 10, t0));
        assert!(!rl.admit(Bucket::Write, 10, t0 + Duration::from_millis(99)));
        assert!(rl.admit(Bucket::Write, 10, t0 + Duration::from_millis(101)));
        // Read is a separate bucket with two seconds of burst at Basic.
        for _ in 0..40 {
            assert!(rl.admit(Bucket::Read, 10, t0));
        }
        assert!(!rl.admit(Bucket::Read, 10, t0));
    }

    #[test]
    fn unlimited_never_refuses() {
        let t0 = Instant::now();
        let mut rl = RateLimiter::new(Tier::Unlimited, t0);
        assert!((0..100_000).all(|_| rl.admit(Bucket::Write, 10, t0)));
    }

    #[test]
    fn order_group_reads_bill_the_write_bucket() {
        use http::Method;
        assert_eq!(
            cost(
                &Method::GET,
                "/trade-api/v2/portfolio/order_groups?subaccount=1"
            ),
            (Bucket::Write, 10)
        );
        assert_eq!(
            cost(&Method::GET, "/trade-api/v2/portfolio/orders/abc"),
            (Bucket::Read, 2)
        );
        assert_eq!(
            cost(&Method::POST, "/trade-api/v2/portfolio/events/orders"),
            (Bucket::Write, 10)
        );
    }
}
