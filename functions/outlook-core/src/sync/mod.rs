//! Mailbox sync: the scheduled dispatcher and the per-mailbox delta sync worker.

pub mod dispatch;
pub mod worker;
