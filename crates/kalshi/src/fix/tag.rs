//! The FIX tag numbers this crate and the simulator use, by their FIX names.

pub const BEGIN_SEQ_NO: u32 = 7;
pub const BEGIN_STRING: u32 = 8;
pub const BODY_LENGTH: u32 = 9;
pub const CHECK_SUM: u32 = 10;
pub const END_SEQ_NO: u32 = 16;
pub const MSG_SEQ_NUM: u32 = 34;
pub const MSG_TYPE: u32 = 35;
pub const NEW_SEQ_NO: u32 = 36;
pub const POSS_DUP_FLAG: u32 = 43;
pub const REF_SEQ_NUM: u32 = 45;
pub const SENDER_COMP_ID: u32 = 49;
pub const SENDING_TIME: u32 = 52;
pub const SYMBOL: u32 = 55;
pub const TARGET_COMP_ID: u32 = 56;
pub const TEXT: u32 = 58;
/// The subaccount of an order group.
pub const ALLOC_ACCOUNT: u32 = 79;
pub const RAW_DATA_LENGTH: u32 = 95;
/// The Logon's signature.
pub const RAW_DATA: u32 = 96;
pub const ENCRYPT_METHOD: u32 = 98;
/// The exchange index of an order group.
pub const EX_DESTINATION: u32 = 100;
pub const HEART_BT_INT: u32 = 108;
pub const TEST_REQ_ID: u32 = 112;
pub const ORIG_SENDING_TIME: u32 = 122;
pub const GAP_FILL_FLAG: u32 = 123;
pub const RESET_SEQ_NUM_FLAG: u32 = 141;
pub const NO_RELATED_SYM: u32 = 146;
pub const REF_TAG_ID: u32 = 371;
pub const REF_MSG_TYPE: u32 = 372;
pub const SESSION_REJECT_REASON: u32 = 373;
pub const BUSINESS_REJECT_REASON: u32 = 380;
pub const DEFAULT_APPL_VER_ID: u32 = 1137;
/// Kalshi's order-group fields.
pub const ORDER_GROUP_ID: u32 = 20130;
pub const ORDER_GROUP_ACTION: u32 = 20131;
pub const ORDER_GROUP_CONTRACTS_LIMIT: u32 = 20132;
