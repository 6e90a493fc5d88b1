//! API tokens: who may call which service, and how that is checked on every request.
//!
//! A token is `tally_<id>_<secret>`. Only the SHA-256 of the secret is stored; a presented
//! token is found by its id and its secret's digest compared in constant time. Scopes are per
//! service and access (`wallets:read`, `wallets:write`; write includes read), or `admin` for
//! everything. Tokens live in the platform's `auth` database, not in any service's.

pub mod layer;
pub mod limit;
pub mod scope;
pub mod store;
pub mod token;

pub use layer::{require, AuthState, Standing, BEARER_PROTOCOL_PREFIX};
pub use limit::{WriteLimiter, WriteRate};
pub use scope::{Access, Scope, ScopeError, Scopes};
pub use store::{TokenInfo, SCHEMA};
pub use token::IssuedToken;
