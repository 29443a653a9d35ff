//! The risk core's fill path counted in instructions, which, unlike time, do not move with
//! whatever else the machine is doing: the load of `cargo bench --bench fill_path`, warmed until
//! the windows are full, then one batch of 100,000 fills in `measured`. Run under callgrind:
//!
//! ```text
//! cargo build --release --example fill_instructions
//! valgrind --tool=callgrind --toggle-collect='*measured*' \
//!     target/release/examples/fill_instructions 10 4
//! ```
//!
//! Arguments: milliseconds of exchange time between fills (10 is the bench's busy account, 1 its
//! extreme one) and how many batches warm it first (4 batches at 10 ms fill the hour window).

#[path = "../benches/support/fill_load.rs"]
mod fill_load;

use fill_load::{BATCH, engine, fills};
use kalshi_riskd::risk::engine::{Fill, Input, Output, RiskEngine};

#[inline(never)]
fn measured(e: &mut RiskEngine, batch: Vec<(i64, Fill)>, out: &mut Vec<Output>) {
    for (now, f) in batch {
        e.handle(Input::Fill(f), now, out);
        out.clear();
    }
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let (ms_per_fill, warm): (i64, u64) = (arg(1, 10), arg(2, 4));
    let mut e = engine();
    let mut out = Vec::with_capacity(64);
    for k in 0..warm {
        for (now, f) in fills(k * BATCH as u64, ms_per_fill) {
            e.handle(Input::Fill(f), now, &mut out);
            out.clear();
        }
    }
    measured(&mut e, fills(warm * BATCH as u64, ms_per_fill), &mut out);
}
