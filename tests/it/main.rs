//! herald's integration tests, in one binary so that the support code and
//! herald itself are compiled and linked once. Each module drives the
//! `herald` binary (or the library) the way an operator, a reader or a
//! feed reader would; `support` starts what they need on loopback.
//!
//! Tests that need a program from outside (Postfix and its smtp-sink,
//! Chromium and chromedriver, Python's dkimpy, Dovecot) skip with one line saying how to
//! install it when it is missing, and fail instead when
//! `HERALD_TEST_REQUIRE_ALL=1` is set (as CI does).
//!
//! The sites' stores are SQLite files; `HERALD_TEST_STORE=postgres` puts
//! each on a fresh database of a PostgreSQL server the tests start
//! (`support::postgres`), as CI does in its second pass.

mod support;

mod articles;
mod bounces_imap;
mod bounces_smtp;
mod bounces_webhooks;
mod browser;
mod cluster;
mod collect_feeds;
mod crash;
mod daemon;
mod delivery_faults;
mod delivery_pipelining;
mod digest;
mod dkim;
mod dns;
mod errors;
mod feed_parse;
mod hostile_xml;
mod house;
mod publish_feeds;
mod reader;
mod relays;
mod run;
mod serve;
mod signup;
mod smtp;
mod store_copy;
mod subscribers;
mod websub;
