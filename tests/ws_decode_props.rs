//! The user-stream decoder is total: whatever the network sends, it answers a message or an
//! error and never panics (the fuzz target `ws_decode` explores the same property further).

use kalshi_riskd::kalshi::ws::{Decoded, decode};
use proptest::prelude::*;
use serde_json::{Value, json};

/// A valid message of each kind the daemon relies on.
fn templates() -> Vec<Value> {
    vec![
        json!({"type":"fill","sid":3,"msg":{"trade_id":"t","order_id":"o","market_ticker":"K",
            "exchange_index":0,"is_taker":true,"yes_price_dollars":"0.5000","count_fp":"3.00","ts_ms":1}}),
        json!({"type":"user_order","sid":2,"msg":{"order_id":"o","ticker":"K","status":"resting","order_group_id":"g"}}),
        json!({"type":"order_group_updates","sid":1,"seq":4,"msg":{"event_type":"created","order_group_id":"g",
            "contracts_limit_fp":"10.00","ts_ms":1}}),
        json!({"id":1,"type":"subscribed","msg":{"channel":"fill","sid":3}}),
        json!({"id":1,"type":"error","msg":{"code":25,"msg":"overflow"}}),
    ]
}

/// Values of every JSON type, including awkward ones.
fn any_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::from),
        Just(json!([])),
        Just(json!({})),
        Just(Value::from("99999999999999999999999.999")),
        Just(Value::from("-1")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        let _ = decode(&text);
    }

    #[test]
    fn any_field_of_a_valid_message_may_be_anything(
        which in 0usize..5,
        path in prop::collection::vec("[a-z_]{1,20}", 1..3),
        replacement in any_value(),
        truncate in prop::option::of(0usize..200),
    ) {
        let mut v = templates()[which].clone();
        // Replace a (possibly new) field at a top-level or msg-level path.
        let target = if path.len() > 1 { v.get_mut("msg").and_then(Value::as_object_mut) } else { v.as_object_mut() };
        if let Some(obj) = target {
            obj.insert(path[path.len() - 1].clone(), replacement);
        }
        let mut text = v.to_string();
        if let Some(n) = truncate {
            let cut = text.char_indices().nth(n).map_or(text.len(), |(i, _)| i);
            text.truncate(cut);
        }
        let _ = decode(&text);
    }
}

#[test]
fn the_templates_decode() {
    for t in templates() {
        let d = decode(&t.to_string()).unwrap();
        assert!(!matches!(d, Decoded::Other { .. }), "{t}");
    }
}
