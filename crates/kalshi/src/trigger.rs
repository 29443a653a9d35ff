//! Armed Triggers: pre-signed Trigger requests, so that firing one costs a socket write rather
//! than a 0.86 ms RSA signature.
//!
//! A Trigger's signature covers `timestamp + "PUT" + path`, and the path has no query, so it can
//! be made ahead of time for any group. The exchange refuses stale timestamps (the simulator
//! after 5 s, the strictest reading of the exchange's window), so armed signatures are refreshed
//! every [`ArmoryConfig::refresh_after`] and used only while younger than
//! [`ArmoryConfig::fresh_for`]; an armed group whose signature has aged past that is signed at
//! fire time instead. What to arm is the caller's choice (groups above their warn ratio, and the
//! kill set), bounded by `max_armed` so that refreshing stays within a CPU budget: at the
//! defaults, 128 groups cost about 85 signatures a second, some 7 % of one core.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use super::auth::{SignedHeaders, Signer, now_ms};
use super::group::GroupAddress;

#[derive(Debug, Clone)]
pub struct ArmoryConfig {
    /// Re-sign an armed Trigger once its signature is this old.
    pub refresh_after: Duration,
    /// Use an armed signature only while it is younger than this.
    pub fresh_for: Duration,
    /// At most this many groups armed at once.
    pub max_armed: usize,
}

impl Default for ArmoryConfig {
    fn default() -> Self {
        ArmoryConfig {
            refresh_after: Duration::from_millis(1_500),
            fresh_for: Duration::from_secs(3),
            max_armed: 128,
        }
    }
}

#[derive(Debug)]
struct Armed {
    headers: SignedHeaders,
    signed_ms: i64,
}

/// The set of armed Triggers. Signing happens in [`Armory::refresh`], which the owner runs off
/// the async workers (it is CPU work).
#[derive(Debug)]
pub struct Armory {
    signer: Signer,
    /// The URL path prefix the exchange signs (`/trade-api/v2`).
    base_path: String,
    cfg: ArmoryConfig,
    armed: Mutex<HashMap<GroupAddress, Option<Armed>>>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot arm more than {0} Triggers")]
pub struct ArmoryFull(pub usize);

impl Armory {
    pub fn new(signer: Signer, base_path: &str, cfg: ArmoryConfig) -> Armory {
        Armory {
            signer,
            base_path: base_path.trim_end_matches('/').to_owned(),
            cfg,
            armed: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<GroupAddress, Option<Armed>>> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn trigger_path(&self, id: &str) -> String {
        format!("{}/portfolio/order_groups/{id}/trigger", self.base_path)
    }

    /// Marks a group to be kept armed; the next [`Armory::refresh`] signs it.
    pub fn arm(&self, group: &GroupAddress) -> Result<(), ArmoryFull> {
        let mut armed = self.lock();
        if !armed.contains_key(group) && armed.len() >= self.cfg.max_armed {
            return Err(ArmoryFull(self.cfg.max_armed));
        }
        armed.entry(group.clone()).or_insert(None);
        Ok(())
    }

    pub fn disarm(&self, group: &GroupAddress) {
        self.lock().remove(group);
    }

    pub fn armed_count(&self) -> usize {
        self.lock().len()
    }

    /// A fresh pre-signed Trigger for the group, if it is armed and not too old at `now_ms`.
    pub fn take(&self, group: &GroupAddress, now_ms: i64) -> Option<SignedHeaders> {
        let armed = self.lock();
        let a = armed.get(group)?.as_ref()?;
        let age = now_ms - a.signed_ms;
        (0..self.cfg.fresh_for.as_millis() as i64)
            .contains(&age)
            .then(|| a.headers.clone())
    }

    /// Signs every armed Trigger that is unsigned or older than `refresh_after` at `now_ms`,
    /// oldest first, at most `max_signatures` of them. Returns how many were signed.
    pub fn refresh_at(&self, now_ms: i64, max_signatures: usize) -> usize {
        let due: Vec<GroupAddress> = {
            let armed = self.lock();
            let mut due: Vec<(i64, &GroupAddress)> = armed
                .iter()
                .filter_map(|(g, a)| match a {
                    None => Some((i64::MIN, g)),
                    Some(a)
                        if now_ms - a.signed_ms >= self.cfg.refresh_after.as_millis() as i64 =>
                    {
                        Some((a.signed_ms, g))
                    }
                    Some(_) => None,
                })
                .collect();
            due.sort();
            due.into_iter()
                .take(max_signatures)
                .map(|(_, g)| g.clone())
                .collect()
        };
        // Sign outside the lock: a fire must never wait behind a refresh.
        let signed: Vec<(GroupAddress, Armed)> = due
            .into_iter()
            .map(|g| {
                let headers = self
                    .signer
                    .sign(now_ms, "PUT", &self.trigger_path(g.id.as_str()));
                (
                    g,
                    Armed {
                        headers,
                        signed_ms: now_ms,
                    },
                )
            })
            .collect();
        let n = signed.len();
        let mut armed = self.lock();
        for (g, a) in signed {
            // Only if it is still armed.
            if let Some(slot) = armed.get_mut(&g) {
                *slot = Some(a);
            }
        }
        n
    }

    /// [`Armory::refresh_at`] with the wall clock.
    pub fn refresh(&self, max_signatures: usize) -> usize {
        self.refresh_at(now_ms(), max_signatures)
    }

    /// How often the owner should call [`Armory::refresh`].
    pub fn refresh_interval(&self) -> Duration {
        self.cfg.refresh_after / 3
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::generate_key;
    use crate::group::GroupId;

    fn armory(max: usize) -> Armory {
        let key = generate_key().unwrap();
        let signer = Signer::from_pem("k", key.private_pem.as_bytes(), "test").unwrap();
        Armory::new(
            signer,
            "/trade-api/v2",
            ArmoryConfig {
                max_armed: max,
                ..ArmoryConfig::default()
            },
        )
    }

    fn group(n: u8) -> GroupAddress {
        GroupAddress {
            id: GroupId::new(format!("g{n}")),
            subaccount: n,
            exchange_index: 0,
        }
    }

    #[test]
    fn armed_signatures_are_used_only_while_fresh_and_refreshed_in_time() {
        let a = armory(8);
        let g = group(1);
        a.arm(&g).unwrap();
        assert_eq!(a.take(&g, 1_000), None, "armed but not signed yet");
        assert_eq!(a.refresh_at(1_000, 10), 1);
        let h = a.take(&g, 1_000).expect("fresh");
        assert_eq!(h.timestamp_ms, "1000");
        assert_eq!(a.take(&g, 3_999), Some(h.clone()));
        assert_eq!(a.take(&g, 4_000), None, "3 s old: too stale to send");
        assert_eq!(a.refresh_at(2_000, 10), 0, "not due before 1.5 s");
        assert_eq!(a.refresh_at(2_500, 10), 1);
        assert_eq!(a.take(&g, 4_000).unwrap().timestamp_ms, "2500");
        a.disarm(&g);
        assert_eq!(a.take(&g, 2_500), None);
    }

    #[test]
    fn refresh_respects_the_signature_budget_oldest_first() {
        let a = armory(8);
        for n in 0..4 {
            a.arm(&group(n)).unwrap();
        }
        assert_eq!(a.refresh_at(0, 2), 2);
        assert_eq!(a.refresh_at(0, 10), 2, "the two never signed come next");
        assert_eq!(a.refresh_at(100, 10), 0);
    }

    #[test]
    fn arming_is_bounded() {
        let a = armory(2);
        a.arm(&group(1)).unwrap();
        a.arm(&group(2)).unwrap();
        a.arm(&group(2)).unwrap();
        assert_eq!(a.arm(&group(3)), Err(ArmoryFull(2)));
    }
}
