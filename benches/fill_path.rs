//! The risk core's fill path (decode excluded): how many fills a second one core can account,
//! check against every limit, and deduplicate. Target: at least 5 million.
//!
//! `cargo bench --bench fill_path`. Three strategies with two limits each (15 s and 1 h) and two
//! groups, an account-level limit, orders already mapped to groups (the common case), UUID
//! trade ids, and no limit breached. The exchange-time rate of the fill stream sets how much
//! the windows and the dedup memory hold, so two regimes are measured: a busy account (100
//! fills a second of exchange time) and an extreme one (1,000 a second, sustained for the
//! hour the longest window covers).

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use kalshi_riskd::risk::engine::Input;

#[path = "support/fill_load.rs"]
mod fill_load;
use fill_load::{BATCH, engine, fills};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("risk");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(20);
    for (label, ms_per_fill) in [("100_per_s", 10), ("1000_per_s", 1)] {
        let mut e = engine();
        let mut next = 0u64;
        let mut out = Vec::with_capacity(64);
        g.bench_function(format!("fill_path/{label}"), |b| {
            b.iter_batched(
                || {
                    let f = fills(next, ms_per_fill);
                    next += BATCH as u64;
                    f
                },
                |batch| {
                    for (now, f) in batch {
                        e.handle(Input::Fill(f), now, &mut out);
                        out.clear();
                    }
                },
                BatchSize::PerIteration,
            )
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
