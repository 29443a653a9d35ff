//! FIX tag=value framing: `8=BeginString␁9=BodyLength␁…␁10=CheckSum␁`.
//!
//! - BodyLength counts the bytes after the `9=` field's SOH up to and including the SOH before
//!   `10=`; CheckSum is the sum of every byte before `10=`, modulo 256, as three digits.
//! - Data fields carry their length in the field before them (`95 RawDataLength` then `96
//!   RawData`, and the standard 90/91, 212/213 pairs), so their value may contain SOH.
//! - Repeating groups are plain repeated tags in order; [`Message::get_all`] reads them.
//!
//! [`decode`] is total: any bytes give a message, [`DecodeError::Incomplete`] (read more) or a
//! precise error naming the offset and what is wrong. It never panics (fuzz target
//! `fix_decode`).

use crate::fix::tag;
use std::fmt;

pub const SOH: u8 = 0x01;

/// Length field → data field it announces.
const DATA_FIELDS: [(u32, u32); 3] = [(95, 96), (90, 91), (212, 213)];
/// Largest body accepted, so a hostile BodyLength cannot make the reader buffer forever.
pub const MAX_BODY: usize = 1 << 20;

/// A message: its fields in wire order, without BeginString, BodyLength and CheckSum.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Message {
    pub fields: Vec<(u32, Vec<u8>)>,
}

impl Message {
    /// A message of type `msg_type` (tag 35 first, as FIX requires).
    pub fn new(msg_type: &str) -> Message {
        Message {
            fields: vec![(tag::MSG_TYPE, msg_type.as_bytes().to_vec())],
        }
    }

    pub fn push(&mut self, tag: u32, value: impl AsRef<[u8]>) -> &mut Message {
        self.fields.push((tag, value.as_ref().to_vec()));
        self
    }

    /// A data field with its length field before it (e.g. 95 and 96).
    pub fn push_data(&mut self, length_tag: u32, data_tag: u32, value: &[u8]) -> &mut Message {
        self.push(length_tag, value.len().to_string());
        self.push(data_tag, value)
    }

    /// The first value of `tag`.
    pub fn get(&self, tag: u32) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(t, _)| *t == tag)
            .map(|(_, v)| v.as_slice())
    }

    pub fn get_str(&self, tag: u32) -> Option<&str> {
        self.get(tag).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// Every value of a repeated tag, in order.
    pub fn get_all(&self, tag: u32) -> impl Iterator<Item = &[u8]> {
        self.fields
            .iter()
            .filter(move |(t, _)| *t == tag)
            .map(|(_, v)| v.as_slice())
    }

    pub fn msg_type(&self) -> Option<&str> {
        self.get_str(tag::MSG_TYPE)
    }
}

/// Encodes `msg` with its BeginString, BodyLength and CheckSum.
pub fn encode(begin_string: &str, msg: &Message) -> Vec<u8> {
    let mut body = Vec::with_capacity(128);
    for (tag, value) in &msg.fields {
        body.extend_from_slice(tag.to_string().as_bytes());
        body.push(b'=');
        body.extend_from_slice(value);
        body.push(SOH);
    }
    let mut out = Vec::with_capacity(body.len() + 32);
    out.extend_from_slice(b"8=");
    out.extend_from_slice(begin_string.as_bytes());
    out.push(SOH);
    out.extend_from_slice(format!("9={}", body.len()).as_bytes());
    out.push(SOH);
    out.extend_from_slice(&body);
    let sum = out.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    out.extend_from_slice(format!("10={sum:03}").as_bytes());
    out.push(SOH);
    out
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// More bytes are needed for a whole message.
    Incomplete,
    /// The message does not start with `8=`.
    NoBeginString,
    /// `9=` is not the second field, or its value is not a length.
    BadBodyLength { offset: usize, reason: String },
    /// The body is longer than [`MAX_BODY`].
    TooLong { body_length: usize },
    /// `10=` is not where BodyLength says the body ends.
    NoChecksumAtEnd { offset: usize },
    /// The checksum does not match.
    BadChecksum { expected: u8, got: String },
    /// A field is malformed (no `=`, a tag that is not a positive number, an empty value, a
    /// data field shorter than its length).
    BadField { offset: usize, reason: String },
    /// The first body field is not `35=MsgType`.
    NoMsgType,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Incomplete => write!(f, "incomplete message"),
            DecodeError::NoBeginString => write!(f, "message does not start with 8=BeginString"),
            DecodeError::BadBodyLength { offset, reason } => {
                write!(f, "byte {offset}: BodyLength (9): {reason}")
            }
            DecodeError::TooLong { body_length } => write!(
                f,
                "BodyLength {body_length} is over the {MAX_BODY}-byte limit"
            ),
            DecodeError::NoChecksumAtEnd { offset } => write!(
                f,
                "byte {offset}: expected 10=CheckSum where BodyLength ends the body"
            ),
            DecodeError::BadChecksum { expected, got } => write!(
                f,
                "CheckSum (10) is {got:?}, the bytes sum to {expected:03}"
            ),
            DecodeError::BadField { offset, reason } => write!(f, "byte {offset}: {reason}"),
            DecodeError::NoMsgType => write!(f, "the first body field is not 35=MsgType"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Reads `tag=` at `pos`; returns the tag and the offset of its value.
fn read_tag(buf: &[u8], pos: usize) -> Result<(u32, usize), DecodeError> {
    let eq = buf[pos..]
        .iter()
        .position(|b| *b == b'=')
        .ok_or(DecodeError::Incomplete)?;
    let text = &buf[pos..pos + eq];
    let tag = std::str::from_utf8(text)
        .ok()
        .filter(|t| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse::<u32>().ok())
        .filter(|t| *t > 0)
        .ok_or_else(|| DecodeError::BadField {
            offset: pos,
            reason: format!(
                "tag {:?} is not a positive number",
                String::from_utf8_lossy(&text[..text.len().min(16)])
            ),
        })?;
    Ok((tag, pos + eq + 1))
}

/// Reads a value up to the next SOH; returns it and the offset after the SOH.
fn read_value(buf: &[u8], pos: usize) -> Result<(&[u8], usize), DecodeError> {
    let end = buf[pos..]
        .iter()
        .position(|b| *b == SOH)
        .ok_or(DecodeError::Incomplete)?;
    Ok((&buf[pos..pos + end], pos + end + 1))
}

/// Decodes one message from the front of `buf`; returns it, its BeginString and how many bytes
/// it took.
pub fn decode(buf: &[u8]) -> Result<(Message, String, usize), DecodeError> {
    if buf.len() < 2 {
        return Err(if b"8=".starts_with(buf) {
            DecodeError::Incomplete
        } else {
            DecodeError::NoBeginString
        });
    }
    if &buf[..2] != b"8=" {
        return Err(DecodeError::NoBeginString);
    }
    let (begin, pos) = read_value(buf, 2)?;
    let begin = String::from_utf8_lossy(begin).into_owned();
    let bl_at = pos;
    if buf.len() < pos + 2 {
        return Err(DecodeError::Incomplete);
    }
    let (tag, vpos) = read_tag(buf, pos).map_err(|e| match e {
        DecodeError::Incomplete => DecodeError::Incomplete,
        _ => DecodeError::BadBodyLength {
            offset: bl_at,
            reason: "the second field must be 9=BodyLength".into(),
        },
    })?;
    if tag != 9 {
        return Err(DecodeError::BadBodyLength {
            offset: bl_at,
            reason: format!("the second field is {tag}, not 9"),
        });
    }
    let (len_text, body_start) = read_value(buf, vpos)?;
    let body_length: usize = std::str::from_utf8(len_text)
        .ok()
        .filter(|t| !t.is_empty() && t.len() <= 9 && t.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| DecodeError::BadBodyLength {
            offset: vpos,
            reason: format!(
                "{:?} is not a length",
                String::from_utf8_lossy(&len_text[..len_text.len().min(16)])
            ),
        })?;
    if body_length > MAX_BODY {
        return Err(DecodeError::TooLong { body_length });
    }
    let body_end = body_start + body_length;
    // "10=" + three digits + SOH
    if buf.len() < body_end + 7 {
        return Err(DecodeError::Incomplete);
    }
    if &buf[body_end..body_end + 3] != b"10=" || (body_length > 0 && buf[body_end - 1] != SOH) {
        return Err(DecodeError::NoChecksumAtEnd { offset: body_end });
    }
    let (sum_text, end) = read_value(buf, body_end + 3)?;
    let expected = buf[..body_end].iter().fold(0u8, |a, b| a.wrapping_add(*b));
    let got = String::from_utf8_lossy(sum_text).into_owned();
    if sum_text.len() != 3 || got.parse::<u16>().ok() != Some(expected as u16) {
        return Err(DecodeError::BadChecksum { expected, got });
    }

    let body = &buf[..body_end];
    let mut fields: Vec<(u32, Vec<u8>)> = Vec::new();
    let mut pos = body_start;
    let mut data_len: Option<(u32, usize)> = None;
    while pos < body_end {
        let (tag, vpos) = read_tag(body, pos).map_err(|e| match e {
            DecodeError::Incomplete => DecodeError::BadField {
                offset: pos,
                reason: "field without '='".into(),
            },
            e => e,
        })?;
        let value: &[u8];
        let next;
        match data_len.take() {
            Some((data_tag, n)) if data_tag == tag => {
                // Checked: a hostile length must not overflow the offset.
                let Some(end) = vpos.checked_add(n).filter(|e| body.get(*e) == Some(&SOH)) else {
                    return Err(DecodeError::BadField {
                        offset: vpos,
                        reason: format!("data field {tag} is not {n} bytes long"),
                    });
                };
                value = &body[vpos..end];
                next = end + 1;
            }
            _ => {
                let (v, n) = read_value(body, vpos).map_err(|_| DecodeError::BadField {
                    offset: vpos,
                    reason: format!("field {tag} has no SOH"),
                })?;
                value = v;
                next = n;
            }
        }
        if value.is_empty() {
            return Err(DecodeError::BadField {
                offset: vpos,
                reason: format!("field {tag} is empty"),
            });
        }
        if let Some(&(_, data_tag)) = DATA_FIELDS.iter().find(|(l, _)| *l == tag) {
            let n = std::str::from_utf8(value)
                .ok()
                .and_then(|t| t.parse::<usize>().ok())
                .ok_or_else(|| DecodeError::BadField {
                    offset: vpos,
                    reason: format!("length field {tag} is not a number"),
                })?;
            data_len = Some((data_tag, n));
        }
        fields.push((tag, value.to_vec()));
        pos = next;
    }
    if fields.first().map(|(t, _)| *t) != Some(35) {
        return Err(DecodeError::NoMsgType);
    }
    Ok((Message { fields }, begin, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn wire(text: &str) -> Vec<u8> {
        text.replace('|', "\u{1}").into_bytes()
    }

    #[test]
    fn encodes_body_length_and_checksum_as_fix_defines_them() {
        let mut m = Message::new("0");
        m.push(49, "A").push(56, "B");
        let bytes = encode("FIXT.1.1", &m);
        let text = String::from_utf8(bytes.clone())
            .unwrap()
            .replace('\u{1}', "|");
        // body "35=0|49=A|56=B|" is 15 bytes
        assert!(
            text.starts_with("8=FIXT.1.1|9=15|35=0|49=A|56=B|10="),
            "{text}"
        );
        let sum = bytes[..bytes.len() - 7]
            .iter()
            .map(|b| *b as u32)
            .sum::<u32>()
            % 256;
        assert!(text.ends_with(&format!("10={sum:03}|")), "{text}");
        let (back, begin, used) = decode(&bytes).unwrap();
        assert_eq!((back, begin.as_str(), used), (m, "FIXT.1.1", bytes.len()));
    }

    #[test]
    fn the_seed_documents_order_group_messages_round_trip() {
        let mut create = Message::new("UOG");
        create
            .push(34, "5")
            .push(52, "20230809-12:34:56.789")
            .push(49, "your-api-key")
            .push(56, "KalshiNR")
            .push(20131, "1")
            .push(20132, "5000");
        let mut trigger = Message::new("UOG");
        trigger
            .push(34, "8")
            .push(20131, "4")
            .push(20130, "770e8400-e29b-41d4-a716-446655440002");
        for m in [create, trigger] {
            let (back, _, _) = decode(&encode("FIXT.1.1", &m)).unwrap();
            assert_eq!(back.msg_type(), Some("UOG"));
            assert_eq!(back, m);
        }
    }

    #[test]
    fn data_fields_may_hold_soh_and_repeating_tags_keep_their_order() {
        let mut m = Message::new("A");
        m.push_data(95, 96, b"sig\x01with=soh");
        m.push(146, "2").push(55, "X").push(55, "Y");
        let bytes = encode("FIXT.1.1", &m);
        let (back, _, _) = decode(&bytes).unwrap();
        assert_eq!(back.get(96), Some(&b"sig\x01with=soh"[..]));
        assert_eq!(
            back.get_all(55).collect::<Vec<_>>(),
            vec![&b"X"[..], &b"Y"[..]]
        );
    }

    #[test]
    fn two_messages_back_to_back_and_a_partial_one() {
        let a = encode("FIXT.1.1", Message::new("0").push(34, "1"));
        let b = encode("FIXT.1.1", Message::new("1").push(112, "T"));
        let stream = [a.clone(), b.clone()].concat();
        let (_, _, used) = decode(&stream).unwrap();
        assert_eq!(used, a.len());
        let (m, _, _) = decode(&stream[used..]).unwrap();
        assert_eq!(m.msg_type(), Some("1"));
        for cut in 0..b.len() - 1 {
            assert_eq!(
                decode(&b[..cut]).unwrap_err(),
                DecodeError::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn malformed_input_gets_a_precise_error() {
        let good = encode("FIXT.1.1", Message::new("0").push(34, "1"));
        let text = String::from_utf8(good.clone()).unwrap();
        let bad_sum = text.replace(&text[text.len() - 4..text.len() - 1], "000");
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (wire("9=5|35=0|10=000|"), "8=BeginString"),
            (wire("8=FIXT.1.1|35=0|9=5|10=000|"), "not 9"),
            (wire("8=FIXT.1.1|9=abc|35=0|10=000|"), "is not a length"),
            (wire("8=FIXT.1.1|9=99999999|"), "over the"),
            (wire("8=FIXT.1.1|9=3|35=0|10=000|"), "expected 10=CheckSum"),
            (bad_sum.into_bytes(), "CheckSum (10) is \"000\""),
        ];
        for (bytes, want) in cases {
            let err = decode(&bytes).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want:?}"
            );
        }
        // Field-level problems, in messages with correct length and checksum.
        for (body, want) in [
            ("35=0|x4=1|", "tag \"x4\" is not a positive number"),
            ("35=0|0=1|", "tag \"0\" is not a positive number"),
            ("35=0|34=|", "field 34 is empty"),
            ("49=A|35=0|", "not 35=MsgType"),
            ("35=A|95=9|96=short|", "data field 96 is not 9 bytes long"),
            (
                "35=A|95=18446744073709551615|96=x|",
                "data field 96 is not 18446744073709551615 bytes long",
            ),
        ] {
            let body = wire(body);
            let mut bytes = wire(&format!("8=FIXT.1.1|9={}|", body.len()));
            bytes.extend_from_slice(&body);
            let sum = bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b));
            bytes.extend_from_slice(format!("10={sum:03}\u{1}").as_bytes());
            let err = decode(&bytes).unwrap_err();
            assert!(
                err.to_string().contains(want),
                "{err} should mention {want:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn any_message_round_trips(
            msg_type in "[A-Za-z0-9]{1,3}",
            fields in prop::collection::vec((1u32..30_000, "[ -~]{1,20}"), 0..20),
        ) {
            let mut m = Message::new(&msg_type);
            for (tag, value) in fields {
                // Length fields announce data fields; keep this property about plain fields.
                if [95, 90, 212, 96, 91, 213].contains(&tag) { continue; }
                m.push(tag, value);
            }
            let bytes = encode("FIXT.1.1", &m);
            let (back, begin, used) = decode(&bytes).unwrap();
            prop_assert_eq!(back, m);
            prop_assert_eq!(begin, "FIXT.1.1");
            prop_assert_eq!(used, bytes.len());
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let mut framed = b"8=FIXT.1.1\x019=".to_vec();
            framed.extend_from_slice(&bytes);
            let _ = decode(&framed);
        }
    }
}
