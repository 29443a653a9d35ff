//! Armed Triggers: pre-signed Trigger requests, so that firing one costs a socket write rather
//! than an RSA signature (0.2 to 1.3 ms, depending on the host).
//!
//! A Trigger's signature covers `timestamp + "PUT" + path`, and the path has no query, so it can
//! be made ahead of time for any group. The exchange refuses a timestamp more than about 5 s old,
//! so an armed signature is used only while its timestamp is younger than
//! [`ArmoryConfig::max_age`] and is re-signed [`ArmoryConfig::refresh_before`] ahead of that; an
//! armed group whose signature is not usable is signed at fire time instead.
//!
//! The exchange has been seen to accept timestamps well ahead of its clock (30 s), which lets a
//! signature made now serve for much longer: signed [`ArmoryConfig::ahead`] into the future, it
//! stays usable for `ahead + max_age`, and keeping a group armed costs a signature every 26.5 s
//! instead of every 1.5 s. That is not taken on trust: the REST client signs ahead only after
//! the exchange has accepted a read signed further ahead still (a probe, repeated every few
//! minutes), and goes back to signing at the current time the moment the exchange refuses one
//! (see [`Armory::set_ahead`], [`Armory::refused`]). A refused Trigger is signed afresh and sent
//! again at once, so the worst a wrong guess costs is one round trip.
//!
//! What to arm is the caller's choice (the daemon arms its managed groups, the tightest
//! strategies' first), bounded by `max_armed` so that refreshing stays within a CPU budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::auth::{SignedHeaders, Signer, now_ms};
use super::group::GroupAddress;

#[derive(Debug, Clone)]
pub struct ArmoryConfig {
    /// Use an armed signature only while its timestamp is younger than this.
    pub max_age: Duration,
    /// Re-sign an armed Trigger this long before its signature would become unusable.
    pub refresh_before: Duration,
    /// How far ahead of the clock to sign once the exchange has shown it accepts that.
    pub ahead: Duration,
    /// At most this many groups armed at once.
    pub max_armed: usize,
}

impl Default for ArmoryConfig {
    fn default() -> Self {
        ArmoryConfig {
            max_age: Duration::from_secs(3),
            refresh_before: Duration::from_millis(1_500),
            ahead: Duration::from_secs(25),
            max_armed: 128,
        }
    }
}

#[derive(Debug)]
struct Armed {
    headers: SignedHeaders,
    /// The signed timestamp, epoch ms.
    stamp_ms: i64,
}

/// The set of armed Triggers. Signing happens in [`Armory::refresh`], which the owner runs off
/// the async workers (it is CPU work).
#[derive(Debug)]
pub struct Armory {
    signer: Signer,
    /// The URL path prefix the exchange signs (`/trade-api/v2`).
    base_path: String,
    cfg: ArmoryConfig,
    /// How far ahead armed Triggers are signed now, ms: `cfg.ahead` while the exchange accepts
    /// it, 0 before it has shown so and after it refused.
    ahead_ms: AtomicI64,
    armed: Mutex<HashMap<GroupAddress, Option<Armed>>>,
    /// How re-signing is spread over the refresh rounds.
    pacing: Mutex<Pacing>,
}

/// Re-signing spread over time: each round may re-sign, besides what is due, as many of the
/// oldest signatures as the armed set's lifetime rate allows since the last round, so that the
/// set is re-signed a few at a time rather than all at once when it falls due together.
#[derive(Debug, Default)]
struct Pacing {
    last_ms: Option<i64>,
    /// Signatures earned and not yet made.
    credit: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot arm more than {0} Triggers")]
pub struct ArmoryFull(pub usize);

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Armory {
    pub fn new(signer: Signer, base_path: &str, cfg: ArmoryConfig) -> Armory {
        Armory {
            signer,
            base_path: base_path.trim_end_matches('/').to_owned(),
            cfg,
            ahead_ms: AtomicI64::new(0),
            armed: Mutex::new(HashMap::new()),
            pacing: Mutex::new(Pacing::default()),
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

    /// How far ahead of the clock Triggers are armed now.
    pub fn ahead(&self) -> Duration {
        Duration::from_millis(u64::try_from(self.ahead_ms.load(Ordering::Relaxed)).unwrap_or(0))
    }

    /// How far ahead the exchange must accept a signature before [`Armory::set_ahead`] is
    /// given `true`: [`ArmoryConfig::ahead`] plus a margin for the clocks drifting apart.
    /// Zero when signing ahead is turned off.
    pub fn probe_ahead(&self) -> Duration {
        if self.cfg.ahead.is_zero() {
            Duration::ZERO
        } else {
            self.cfg.ahead + Duration::from_secs(2)
        }
    }

    /// Whether the exchange accepted a request signed [`Armory::probe_ahead`] ahead: signs
    /// ahead from now on, or (false) at the current time. Returns whether that changed.
    pub fn set_ahead(&self, accepted: bool) -> bool {
        let to = if accepted { ms(self.cfg.ahead) } else { 0 };
        self.ahead_ms.swap(to, Ordering::Relaxed) != to
    }

    /// The exchange refused a pre-signed request stamped `stamp_ms`, sent at `sent_ms`. If it
    /// was signed ahead, signing ahead stops (until a probe passes again) and every armed
    /// signature made ahead is made again. Returns whether that happened.
    pub fn refused(&self, stamp_ms: i64, sent_ms: i64) -> bool {
        stamp_ms > sent_ms && self.ahead_ms.swap(0, Ordering::Relaxed) != 0
    }

    /// Whether an armed signature stamped `stamp_ms` may be sent at `now_ms`: young enough,
    /// and not further ahead than the exchange is now known to accept.
    fn usable(&self, stamp_ms: i64, now_ms: i64) -> bool {
        let age = now_ms - stamp_ms;
        age < ms(self.cfg.max_age) && -age <= self.ahead_ms.load(Ordering::Relaxed)
    }

    /// Whether [`Armory::take`] would give a signature for the group at `now_ms`.
    pub fn holds(&self, group: &GroupAddress, now_ms: i64) -> bool {
        let armed = self.lock();
        matches!(armed.get(group), Some(Some(a)) if self.usable(a.stamp_ms, now_ms))
    }

    /// A usable pre-signed Trigger for the group at `now_ms`, if it is armed.
    pub fn take(&self, group: &GroupAddress, now_ms: i64) -> Option<SignedHeaders> {
        let armed = self.lock();
        let a = armed.get(group)?.as_ref()?;
        self.usable(a.stamp_ms, now_ms).then(|| a.headers.clone())
    }

    /// Signs every armed Trigger that is unsigned, due for a refresh or no longer usable at
    /// `now_ms`, oldest first, and, paced, some of the oldest of the others: a signature lives
    /// `ahead + max_age - refresh_before` before it falls due, so the set needs `armed` of them
    /// per lifetime, and each round may make as many as that rate earned since the last one
    /// (what is due counts against it). A set signed all at once (at start, or when signing
    /// ahead begins) is so re-signed a few at a time within one lifetime, and stays spread: no
    /// round re-signs the whole set at once again. At most `max_signatures` in all. Returns how
    /// many were signed.
    pub fn refresh_at(&self, now_ms: i64, max_signatures: usize) -> usize {
        let due_from = ms(self.cfg.max_age) - ms(self.cfg.refresh_before);
        let ahead_ms = self.ahead_ms.load(Ordering::Relaxed);
        let stamp_ms = now_ms + ahead_ms;
        let lifetime_ms = (ahead_ms + due_from).max(1);
        let due: Vec<GroupAddress> = {
            let armed = self.lock();
            // (stamp, group): unsigned first, then oldest first.
            let mut due: Vec<(i64, &GroupAddress)> = Vec::new();
            let mut others: Vec<(i64, &GroupAddress)> = Vec::new();
            for (g, a) in armed.iter() {
                match a {
                    None => due.push((i64::MIN, g)),
                    Some(a)
                        if now_ms - a.stamp_ms >= due_from || !self.usable(a.stamp_ms, now_ms) =>
                    {
                        due.push((a.stamp_ms, g))
                    }
                    Some(a) => others.push((a.stamp_ms, g)),
                }
            }
            let mut pacing = self.pacing.lock().unwrap_or_else(|e| e.into_inner());
            let elapsed = (now_ms - pacing.last_ms.unwrap_or(now_ms)).max(0);
            pacing.last_ms = Some(now_ms);
            let set = armed.len() as f64;
            pacing.credit = (pacing.credit + set * elapsed as f64 / lifetime_ms as f64).min(set);
            let early = (pacing.credit as usize).saturating_sub(due.len());
            due.sort();
            others.sort();
            let chosen: Vec<GroupAddress> = due
                .into_iter()
                .chain(others.into_iter().take(early))
                .take(max_signatures)
                .map(|(_, g)| g.clone())
                .collect();
            pacing.credit = (pacing.credit - chosen.len() as f64).max(0.0);
            chosen
        };
        // Sign outside the lock: a fire must never wait behind a refresh.
        let signed: Vec<(GroupAddress, Armed)> = due
            .into_iter()
            .map(|g| {
                let headers = self
                    .signer
                    .sign(stamp_ms, "PUT", &self.trigger_path(g.id.as_str()));
                (g, Armed { headers, stamp_ms })
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
        self.cfg.refresh_before / 3
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
        assert!(!a.holds(&g, 1_000));
        assert_eq!(a.refresh_at(1_000, 10), 1);
        assert!(a.holds(&g, 1_000));
        let h = a.take(&g, 1_000).expect("fresh");
        assert_eq!(h.timestamp_ms, "1000");
        assert_eq!(a.take(&g, 3_999), Some(h.clone()));
        assert_eq!(a.take(&g, 4_000), None, "3 s old: too stale to send");
        assert!(!a.holds(&g, 4_000));
        assert!(!a.holds(&group(2), 1_000), "never armed");
        assert_eq!(a.refresh_at(2_499, 10), 0, "not due before 1.5 s");
        assert_eq!(a.refresh_at(2_000, 10), 0, "not due before 1.5 s");
        assert_eq!(a.refresh_at(2_500, 10), 1);
        assert_eq!(a.take(&g, 4_000).unwrap().timestamp_ms, "2500");
        a.disarm(&g);
        assert_eq!(a.take(&g, 2_500), None);
    }

    #[test]
    fn signing_ahead_starts_only_when_the_exchange_accepted_it_and_stops_at_a_refusal() {
        let a = armory(8);
        let g = group(1);
        a.arm(&g).unwrap();
        assert_eq!(a.probe_ahead(), Duration::from_secs(27));
        assert_eq!(a.refresh_at(1_000, 10), 1);
        assert_eq!(
            a.take(&g, 1_000).unwrap().timestamp_ms,
            "1000",
            "not ahead yet"
        );

        assert!(a.set_ahead(true), "the probe passed");
        assert!(!a.set_ahead(true), "no change");
        assert_eq!(a.refresh_at(2_600, 10), 1, "due as before");
        let h = a.take(&g, 2_600).unwrap();
        assert_eq!(h.timestamp_ms, "27600", "signed 25 s ahead");
        assert_eq!(a.take(&g, 30_599), Some(h.clone()), "usable for 28 s");
        assert_eq!(a.take(&g, 30_600), None);
        assert_eq!(a.refresh_at(29_099, 10), 0, "not due before 26.5 s");
        assert_eq!(a.refresh_at(29_100, 10), 1, "a signature every 26.5 s");

        // A clock stepped back: a signature further ahead than allowed is not sent.
        assert_eq!(a.take(&g, 1_000), None);

        // The exchange refused a request signed ahead: back to the current time at once, and
        // the signatures made ahead are made again.
        assert!(
            !a.refused(29_000, 29_000),
            "not signed ahead: nothing to learn"
        );
        assert!(a.refused(54_100, 29_200));
        assert_eq!(a.ahead(), Duration::ZERO);
        assert_eq!(
            a.take(&g, 29_200),
            None,
            "a signature ahead is no longer sent"
        );
        assert_eq!(a.refresh_at(29_200, 10), 1);
        assert_eq!(a.take(&g, 29_200).unwrap().timestamp_ms, "29200");
        assert!(!a.refused(54_100, 29_300), "already stopped");
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

    /// Rounds every 500 ms for three minutes with 40 groups signed 25 s ahead: after the set is
    /// signed at once (at start, and when signing ahead begins), it is re-signed a few at a
    /// time, never all at once again, and every group stays usable throughout.
    #[test]
    fn re_signing_is_spread_over_the_rounds_and_never_lets_a_signature_lapse() {
        let a = armory(64);
        let groups: Vec<GroupAddress> = (0..40).map(group).collect();
        for g in &groups {
            a.arm(g).unwrap();
        }
        assert_eq!(a.refresh_at(0, 128), 40, "all at once at start");
        assert!(a.set_ahead(true));
        let mut per_round = Vec::new();
        for now in (500..180_000).step_by(500) {
            per_round.push((now, a.refresh_at(now, 128)));
            for g in &groups {
                assert!(a.holds(g, now), "{g:?} unusable at {now} ms");
            }
        }
        // Due 1.5 s after the start: the set, signed ahead for the first time (but for the one
        // or two already re-signed, paced, in the rounds before).
        assert_eq!(per_round[2].0, 1_500);
        assert!(per_round[2].1 >= 38, "{:?}", &per_round[..3]);
        let later: Vec<usize> = per_round
            .iter()
            .filter(|(now, _)| *now > 1_500)
            .map(|(_, n)| *n)
            .collect();
        assert!(
            later.iter().all(|n| *n <= 2),
            "a round re-signed {} at once",
            later.iter().max().unwrap()
        );
        // About one signature per group per 26.5 s: the pacing adds none.
        let made: usize = later.iter().sum();
        assert!((250..=290).contains(&made), "{made} signatures in 178.5 s");
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
