//! The exchange's clock, as the `Date` header of its REST answers tells it. Request signatures
//! carry the time and the exchange refuses them beyond a few seconds of skew, so the offset is
//! worth watching. `Date` has whole seconds: the exchange's time at its answer was in
//! `[date, date + 1 s)`, and the answer was made between sending and receiving, so one sample
//! estimates the offset to within half a second plus half the round trip.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The last estimate of the exchange's clock minus ours.
#[derive(Debug, Default)]
pub struct ClockOffset {
    ms: AtomicI64,
    known: AtomicBool,
}

impl ClockOffset {
    /// Takes one answer's `Date` (an HTTP date) with when its request was sent and its answer
    /// received (Unix ms, our clock). A header that does not parse is ignored.
    pub fn observe(&self, date: &str, sent_ms: i64, received_ms: i64) {
        let Some(date_ms) = parse_http_date_ms(date) else {
            return;
        };
        self.ms
            .store(offset_ms(date_ms, sent_ms, received_ms), Ordering::Relaxed);
        self.known.store(true, Ordering::Relaxed);
    }

    /// The exchange's clock minus ours, in ms; `None` before the first answer with a `Date`.
    pub fn get_ms(&self) -> Option<i64> {
        self.known
            .load(Ordering::Relaxed)
            .then(|| self.ms.load(Ordering::Relaxed))
    }
}

/// The offset one sample gives: the middle of the second `Date` names, against the middle of
/// the round trip.
pub fn offset_ms(date_ms: i64, sent_ms: i64, received_ms: i64) -> i64 {
    date_ms + 500 - sent_ms.midpoint(received_ms)
}

fn parse_http_date_ms(date: &str) -> Option<i64> {
    let t = httpdate::parse_http_date(date).ok()?;
    let d = t.duration_since(UNIX_EPOCH).ok()?;
    i64::try_from(d.as_millis()).ok()
}

/// `t` as an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`), as the exchange's `Date` carries it.
pub fn http_date(t: SystemTime) -> String {
    httpdate::fmt_http_date(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_sample_is_the_middle_of_the_named_second_against_the_middle_of_the_trip() {
        let c = ClockOffset::default();
        assert_eq!(c.get_ms(), None);
        // 1994-11-06T08:49:37Z is 784111777 s; sent 1 s before, received 200 ms after.
        c.observe(
            "Sun, 06 Nov 1994 08:49:37 GMT",
            784_111_776_000,
            784_111_776_200,
        );
        assert_eq!(c.get_ms(), Some(1_400));
        c.observe("not a date", 0, 0);
        assert_eq!(c.get_ms(), Some(1_400), "a bad header changes nothing");
        let t = UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(http_date(t), "Sun, 06 Nov 1994 08:49:37 GMT");
    }
}
