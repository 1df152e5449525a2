//! Microsoft Graph mail client and wire types.
//!
//! - [`types`]: serde types of the Graph responses we read (tolerant of extra fields).
//! - [`GraphMessage::into_mail_message`](types::GraphMessage::into_mail_message): the message as
//!   rules see it, with its kinds, sensitivity and size.
//! - [`GraphClient`]: folders, delta, message actions, categories and `$batch`, with immutable ids,
//!   per-mailbox concurrency, bounded retries and request accounting.
//! - [`GraphError`]: failures classified on status and `error.code`.

pub mod batch;
pub mod client;
pub mod convert;
pub mod error;
pub mod retry;
pub mod types;

pub use batch::{BatchPlanError, MAX_BATCH_ITEMS, match_responses, plan_batches};
pub use client::{
    GraphClient, GraphClientOptions, GraphStats, MailboxRef, MessagePatch,
    OUTLOOK_MAILBOX_CONCURRENCY, RequestKind, SELECT_SIZE, WELL_KNOWN_FOLDERS,
};
pub use convert::{ConversionError, MESSAGE_SIZE_PROPERTY_ID, derive_kinds};
pub use error::{GraphError, classify, is_sync_state_code};
pub use retry::{RetryPolicy, parse_retry_after};
pub use types::{
    BatchRequest, BatchRequestItem, BatchResponse, BatchResponseItem, Collection, DeltaPage,
    GraphErrorBody, GraphErrorDetail, GraphMessage, MailFolder, OutlookCategory, Recipient, User,
};
