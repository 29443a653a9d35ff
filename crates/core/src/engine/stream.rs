//! The stream's health (blind, disconnected, lossy), the periodic sweep and the timers.

use super::{
    BACKFILL_MARGIN_MS, Command, DAEMON, DecisionKind, Output, RiskEngine, SWEEP_EVERY_MS,
    SWEEP_OVERLAP_MS, StreamHealth, decision,
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
    /// reads from [`SWEEP_OVERLAP_MS`] before the newest fill the last answered sweep had seen
    /// (it read everything up to there), and never from further back than
    /// [`BACKFILL_MARGIN_MS`] before the last fill counted: under a steady flow each sweep reads
    /// one period and the overlap, so its cost follows the fill rate, not the uptime. Before
    /// any sweep was answered it reads from shortly before the last fill counted, but never
    /// from further back than three periods before the last sweep (room for 30 s of skew
    /// between the daemon's clock and the exchange's). A sweep that is never answered (its
    /// read failed, or a backfill was already reading) moves nothing: the next reads from
    /// where the last answered one left off.
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
        let mut since_ms = match (self.last_fill_ms, self.sweep_mark) {
            (Some(l), Some(mark)) => (l - BACKFILL_MARGIN_MS).max(mark - SWEEP_OVERLAP_MS),
            (Some(l), None) => (l - BACKFILL_MARGIN_MS).max(floor),
            (None, _) => floor,
        }
        .max(0);
        // Sweeps not answered yet (failed, or still reading): this one starts where the oldest
        // of them did, whose mark is kept (whichever sweep answers next read at least up to
        // it).
        match self.sweep_pending {
            Some((oldest, _)) => since_ms = since_ms.min(oldest),
            None => self.sweep_pending = Some((since_ms, self.last_fill_ms)),
        }
        out.push(Output::Command(Command::Sweep { since_ms }));
    }

    /// A sweep answered: it read everything from the oldest unanswered sweep's start up to
    /// that sweep's mark, which the next reads on from.
    pub(super) fn sweep_answered(&mut self) {
        if let Some((_, mark)) = self.sweep_pending.take() {
            self.sweep_mark = mark.or(self.sweep_mark);
        }
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
