//! Black-box tests of `tally serve`: each test starts the real binary on port 0 with a fresh
//! database (SQLite, and PostgreSQL when reachable) and speaks HTTP to it, as a user would.

#[macro_use]
mod support;

mod bad_input;
mod claims;
mod cli;
mod concurrency;
mod crash;
mod hospital;
mod idempotency;
mod security;
mod trading;
mod wallets_api;
