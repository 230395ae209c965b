//! herald: collect articles, publish them as feeds, and mail a daily digest.
//!
//! The pipeline runs one way: `collect` → store → `publish` (feeds) and
//! `compose` (editions) → `deliver` (SMTP or the outbox). Each stage has one
//! entry function and reads only what the previous stage stored, so any stage
//! can be rerun after a crash and picks up where it stopped.

pub mod article;
pub mod bounces;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod collect;
pub mod compose;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod email;
pub mod fsutil;
pub mod pipeline;
pub mod publish;
pub mod scaffold;
pub mod store;
pub mod subscribe;
pub mod templates;
pub mod text;
pub mod types;
pub mod web;

pub use article::Article;
pub use config::Config;
pub use email::EmailAddress;
pub use store::Store;
