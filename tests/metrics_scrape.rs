//! The per-strategy families of a scrape, written from the risk core's state: every family
//! named once with its help and type, every sample in the text format with its labels in
//! order and escaped, values as the core has them, and counters that never go back.

mod risk_support;

use std::collections::BTreeMap;

use kalshi_riskd::http::Metrics;
use kalshi_riskd::kalshi::stream::StreamCounters;
use kalshi_riskd::risk::engine::Input;
use risk_support::*;

/// A scrape, checked line by line: `# HELP` and `# TYPE` once per family, before its samples;
/// every sample `name{labels} value` with the labels sorted by name (a bucket's `le` last) and
/// the value a number.
/// Returns each sample's value by its series (`name{labels}` as written).
fn scrape(m: &Metrics) -> BTreeMap<String, f64> {
    let text = m.render();
    let mut helped = BTreeMap::new();
    let mut typed = BTreeMap::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                helped.insert(name.to_owned(), ()).is_none(),
                "two HELP for {name}"
            );
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(
                ["gauge", "counter", "histogram"].contains(&kind),
                "type of {name}: {kind}"
            );
            assert!(
                typed.insert(name.to_owned(), ()).is_none(),
                "two TYPE for {name}"
            );
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line}: {e}")),
        };
        let name = series.split('{').next().unwrap();
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s).filter(|f| typed.contains_key(*f)))
            .unwrap_or(name);
        assert!(
            helped.contains_key(family) && typed.contains_key(family),
            "{line}: sample before its family's HELP and TYPE"
        );
        if let Some(labels) = series.strip_prefix(name).and_then(|l| l.strip_prefix('{')) {
            let labels = labels.strip_suffix('}').expect(line);
            let names: Vec<&str> = labels
                .split("\",")
                .map(|kv| kv.split_once("=\"").expect(line).0)
                .filter(|k| *k != "le") // a histogram's bucket bound comes last
                .collect();
            let mut sorted = names.clone();
            sorted.sort_unstable();
            assert_eq!(names, sorted, "{line}: labels out of order");
        }
        assert!(
            samples.insert(series.to_owned(), value).is_none(),
            "{series} twice"
        );
    }
    samples
}

fn refresh(m: &Metrics, h: &mut Harness) {
    m.refresh(&mut h.engine, &StreamCounters::default(), h.now);
}

fn v(samples: &BTreeMap<String, f64>, series: &str) -> Option<f64> {
    samples.get(&format!("kalshi_riskd_{series}")).copied()
}

#[test]
fn every_strategy_is_scraped_with_its_windows_states_and_counts() {
    let mut h = Harness::new(
        config(vec![
            policy(
                "mm",
                vec![limit("fast", 15_000, 100), limit("hour", 3_600_000, 1000)],
            ),
            policy("we\"ird\\name", vec![limit("fast", 15_000, 10)]),
        ]),
        2,
    );
    let m = Metrics::new().unwrap();
    refresh(&m, &mut h);
    let s = scrape(&m);
    let weird = r#"strategy="we\"ird\\name""#;
    for (series, want) in [
        (r#"window_contracts{limit="fast",strategy="mm"}"#, 0.0),
        (
            r#"window_limit_contracts{limit="hour",strategy="mm"}"#,
            1000.0,
        ),
        (r#"window_warn_ratio{limit="fast",strategy="mm"}"#, 0.8),
        (
            r#"window_utilization_ratio{limit="fast",strategy="mm"}"#,
            0.0,
        ),
        (
            r#"group_contracts_limit{exchange_index="1",strategy="mm"}"#,
            500.0,
        ),
        (r#"strategy_tripped{strategy="mm"}"#, 0.0),
        (r#"strategy_state{state="active",strategy="mm"}"#, 1.0),
        (r#"strategy_state{state="unknown",strategy="mm"}"#, 0.0),
        (r#"fills_total{strategy="mm"}"#, 0.0),
        (r#"filled_contracts_total{strategy="mm"}"#, 0.0),
        (r#"trips_total{reason="blind",strategy="mm"}"#, 0.0),
        (r#"resets_total{reason="auto",strategy="mm"}"#, 0.0),
        (
            &format!(r#"window_limit_contracts{{limit="fast",{weird}}}"#),
            10.0,
        ),
        (&format!("strategy_tripped{{{weird}}}"), 0.0),
    ] {
        assert_eq!(v(&s, series), Some(want), "{series} in {s:#?}");
    }

    h.advance(1_000).fill("mm", c(60));
    refresh(&m, &mut h);
    let s = scrape(&m);
    assert_eq!(
        v(&s, r#"window_contracts{limit="fast",strategy="mm"}"#),
        Some(60.0)
    );
    assert_eq!(
        v(
            &s,
            r#"window_utilization_ratio{limit="fast",strategy="mm"}"#
        ),
        Some(0.6)
    );
    assert_eq!(
        v(
            &s,
            r#"window_utilization_ratio{limit="hour",strategy="mm"}"#
        ),
        Some(0.06)
    );
    assert_eq!(
        v(&s, r#"strategy_state{state="active",strategy="mm"}"#),
        Some(1.0)
    );
    assert_eq!(v(&s, r#"fills_total{strategy="mm"}"#), Some(1.0));
    assert_eq!(
        v(&s, r#"filled_contracts_total{strategy="mm"}"#),
        Some(60.0)
    );

    h.advance(1_000).fill("mm", c(25)); // 85 of 100: over the warn ratio
    refresh(&m, &mut h);
    let s = scrape(&m);
    assert_eq!(
        v(&s, r#"strategy_state{state="warned",strategy="mm"}"#),
        Some(1.0)
    );
    assert_eq!(
        v(&s, r#"strategy_state{state="active",strategy="mm"}"#),
        Some(0.0)
    );

    h.advance(1_000).fill("mm", c(20)); // 105 of 100
    refresh(&m, &mut h);
    let s = scrape(&m);
    assert_eq!(v(&s, r#"strategy_tripped{strategy="mm"}"#), Some(1.0));
    assert_eq!(
        v(&s, r#"strategy_state{state="tripped",strategy="mm"}"#),
        Some(1.0)
    );
    assert_eq!(
        v(&s, r#"trips_total{reason="limit",strategy="mm"}"#),
        Some(1.0)
    );
    assert_eq!(v(&s, r#"fills_total{strategy="mm"}"#), Some(3.0));
    assert_eq!(
        v(&s, r#"filled_contracts_total{strategy="mm"}"#),
        Some(105.0)
    );

    // The window drains; the figures follow it.
    h.advance(15_000);
    refresh(&m, &mut h);
    let s = scrape(&m);
    assert_eq!(
        v(&s, r#"window_contracts{limit="fast",strategy="mm"}"#),
        Some(0.0)
    );
    assert_eq!(
        v(&s, r#"window_contracts{limit="hour",strategy="mm"}"#),
        Some(105.0)
    );
}

/// A reload that retires a strategy drops its windows and states but keeps its counters; one
/// that brings it back counts on from there (its guard is new and counts from zero).
#[test]
fn counters_never_go_back_across_reloads() {
    let both = || {
        vec![
            policy("mm", vec![limit("fast", 15_000, 100)]),
            policy("calm", vec![limit("fast", 15_000, 100)]),
        ]
    };
    let mut h = Harness::new(config(both()), 1);
    let m = Metrics::new().unwrap();
    for _ in 0..3 {
        h.advance(100).fill("mm", c(2));
    }
    refresh(&m, &mut h);
    assert_eq!(v(&scrape(&m), r#"fills_total{strategy="mm"}"#), Some(3.0));

    h.advance(100).send(Input::Policies(vec![policy(
        "calm",
        vec![limit("fast", 15_000, 100)],
    )]));
    refresh(&m, &mut h);
    let s = scrape(&m);
    assert_eq!(v(&s, r#"fills_total{strategy="mm"}"#), Some(3.0), "kept");
    assert_eq!(v(&s, r#"filled_contracts_total{strategy="mm"}"#), Some(6.0));
    assert_eq!(
        v(&s, r#"strategy_state{state="active",strategy="mm"}"#),
        None
    );
    assert_eq!(
        v(&s, r#"window_contracts{limit="fast",strategy="mm"}"#),
        None
    );
    assert_eq!(
        v(&s, r#"strategy_state{state="active",strategy="calm"}"#),
        Some(1.0)
    );

    h.advance(100).send(Input::Policies(both()));
    h.send(Input::GroupsAssigned {
        strategy: "mm".into(),
        groups: vec![group("mm", 0)],
    });
    h.advance(100).fill("mm", c(1));
    refresh(&m, &mut h);
    let s = scrape(&m);
    assert_eq!(v(&s, r#"fills_total{strategy="mm"}"#), Some(4.0), "{s:#?}");
    assert_eq!(v(&s, r#"filled_contracts_total{strategy="mm"}"#), Some(7.0));
    assert_eq!(
        v(&s, r#"strategy_state{state="active",strategy="mm"}"#),
        Some(1.0)
    );
}
