//! The stream's health (blind, disconnected, lossy), the periodic sweep and the timers.

use super::{
    BACKFILL_MARGIN_MS, Command, DAEMON, DecisionKind, Output, RiskEngine, SWEEP_EVERY_MS,
    StreamHealth, decision,
};
use crate::guard::{GuardState, TripReason};
use crate::policy::BlindAction;

impl RiskEngine {
    pub(super) fn go_blind(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        if self.blind {
            return;
        }
        self.blind = true;
        out.push(Output::Decision(decision(
            now_ms,
            DecisionKind::Blind,
            "the user stream is blind",
            DAEMON,
        )));
        for i in 0..self.strategies.len() {
            let s = &self.strategies[i];
            // Unknown is guarded like Active: the blind action applies to both.
            if s.policy.blind == BlindAction::Trigger && s.state() != GuardState::Tripped {
                self.trip(
                    i,
                    TripReason::Blind,
                    DAEMON,
                    "the user stream is blind".into(),
                    None,
                    now_ms,
                    out,
                );
            }
        }
    }

    pub(super) fn on_stream(&mut self, h: StreamHealth, now_ms: i64, out: &mut Vec<Output>) {
        match h {
            StreamHealth::Connected => {
                self.disconnected_since = None;
                if std::mem::take(&mut self.gap) {
                    self.ask_backfill(out);
                }
                if self.blind {
                    self.blind = false;
                    out.push(Output::Decision(decision(
                        now_ms,
                        DecisionKind::StreamRestored,
                        "the user stream is back; reconciling",
                        DAEMON,
                    )));
                }
                out.push(Output::Command(Command::Reconcile));
            }
            StreamHealth::Disconnected => {
                self.disconnected_since.get_or_insert(now_ms);
                self.gap = true;
            }
            StreamHealth::Blind => {
                self.gap = true;
                self.go_blind(now_ms, out)
            }
            StreamHealth::Lossy(why) => {
                out.push(Output::Decision(decision(
                    now_ms,
                    DecisionKind::StreamLossy,
                    format!("stream events may have been missed: {why}"),
                    DAEMON,
                )));
                out.push(Output::Command(Command::Reconcile));
                self.ask_backfill(out);
                // And again once the stream is whole (a lost subscription is being restored).
                self.gap = true;
            }
        }
    }

    /// Asks for the fills since shortly before the last one counted (the shell reads them and
    /// answers with [`Input::Backfill`]). Before any fill, the shell's start-up rebuild covers
    /// the windows; `since_ms` 0 then means "since that rebuild".
    pub(super) fn ask_backfill(&mut self, out: &mut Vec<Output>) {
        let since_ms = self
            .last_fill_ms
            .map_or(0, |l| (l - BACKFILL_MARGIN_MS).max(0));
        out.push(Output::Command(Command::Backfill { since_ms }));
    }

    /// Asks for the periodic sweep while the stream is up (a gap has its own backfill). It
    /// reads from shortly before the last fill counted, but never from further back than three
    /// periods before the last sweep (room for 30 s of skew between the daemon's clock and the
    /// exchange's), so its cost follows the fill rate, not the uptime.
    pub(super) fn sweep_if_due(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        let Some(last) = self.last_sweep_ms else {
            self.last_sweep_ms = Some(now_ms);
            return;
        };
        if now_ms - last < SWEEP_EVERY_MS || self.disconnected_since.is_some() || self.blind {
            return;
        }
        self.last_sweep_ms = Some(now_ms);
        let floor = last - 3 * SWEEP_EVERY_MS;
        let since_ms = self
            .last_fill_ms
            .map_or(floor, |l| (l - BACKFILL_MARGIN_MS).max(floor))
            .max(0);
        out.push(Output::Command(Command::Sweep { since_ms }));
    }

    pub(super) fn on_tick(&mut self, now_ms: i64, out: &mut Vec<Output>) {
        if let Some(since) = self.disconnected_since
            && now_ms - since >= self.cfg.blind_after_ms
        {
            self.go_blind(now_ms, out);
        }
        self.sweep_if_due(now_ms, out);
        for i in 0..self.strategies.len() {
            self.record_warnings(i, now_ms, out);
            let may_reset = !self.kill.is_engaged() && !self.blind && self.latch_readable;
            if may_reset && self.strategies[i].auto_reset_due(now_ms) {
                self.strategies[i].auto_resets.push_back(now_ms);
                self.reset_strategy(
                    i,
                    "auto",
                    DAEMON,
                    "cooldown passed and every window drained",
                    now_ms,
                    out,
                );
            }
            // Lowered limits whose group has drained below them.
            let s = &mut self.strategies[i];
            let pending = std::mem::take(&mut s.pending_limits);
            let mut ready = Vec::new();
            for (gid, limit) in pending {
                let Some(gi) = s.group_index(&gid) else {
                    continue;
                };
                if s.group_volume(gi, now_ms) < limit {
                    ready.push((s.groups[gi].clone(), limit));
                } else {
                    s.pending_limits.push((gid, limit));
                }
            }
            let (name, mode) = (s.policy.name.clone(), s.policy.mode);
            for (group, limit) in ready {
                self.command(
                    Some((&name, mode)),
                    Command::UpdateLimit { group, limit },
                    now_ms,
                    DAEMON,
                    "deferred limit",
                    out,
                );
            }
        }
    }
}
