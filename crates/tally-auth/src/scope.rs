//! Scopes: what a token may do.

use std::collections::BTreeSet;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Access {
    Read,
    Write,
}

impl Access {
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Read => "read",
            Access::Write => "write",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Everything, including token management.
    Admin,
    Service {
        service: String,
        access: Access,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("`{0}` is not a scope: use SERVICE:read, SERVICE:write or admin")]
    Malformed(String),
    #[error("`{0}` names no service; known services: {1}")]
    UnknownService(String, String),
    #[error("at least one scope is needed")]
    Empty,
}

impl Scope {
    /// Parses one scope; `services` lists the services that exist.
    pub fn parse(text: &str, services: &[&str]) -> Result<Scope, ScopeError> {
        if text == "admin" {
            return Ok(Scope::Admin);
        }
        let (service, access) = text
            .split_once(':')
            .ok_or_else(|| ScopeError::Malformed(text.to_owned()))?;
        let access = match access {
            "read" => Access::Read,
            "write" => Access::Write,
            _ => return Err(ScopeError::Malformed(text.to_owned())),
        };
        if !services.contains(&service) {
            return Err(ScopeError::UnknownService(
                service.to_owned(),
                services.join(", "),
            ));
        }
        Ok(Scope::Service {
            service: service.to_owned(),
            access,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Admin => f.write_str("admin"),
            Scope::Service { service, access } => write!(f, "{service}:{}", access.as_str()),
        }
    }
}

/// A token's scopes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(BTreeSet<Scope>);

impl Scopes {
    /// Parses `wallets:write,billing:read`.
    pub fn parse(text: &str, services: &[&str]) -> Result<Scopes, ScopeError> {
        let scopes = text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Scope::parse(s, services))
            .collect::<Result<BTreeSet<_>, _>>()?;
        if scopes.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(Scopes(scopes))
    }

    pub fn admin() -> Scopes {
        Scopes(BTreeSet::from([Scope::Admin]))
    }

    /// Whether these scopes allow `access` to `service`. Write includes read.
    pub fn allows(&self, service: &str, access: Access) -> bool {
        self.0.iter().any(|scope| match scope {
            Scope::Admin => true,
            Scope::Service {
                service: s,
                access: a,
            } => s == service && *a >= access,
        })
    }

    pub fn is_admin(&self) -> bool {
        self.0.contains(&Scope::Admin)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Scope::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &[&str] = &["wallets", "billing"];

    #[test]
    fn write_includes_read_and_admin_includes_everything() {
        let s = Scopes::parse("wallets:write, billing:read", SERVICES).unwrap();
        assert!(s.allows("wallets", Access::Read) && s.allows("wallets", Access::Write));
        assert!(s.allows("billing", Access::Read) && !s.allows("billing", Access::Write));
        assert!(!s.allows("claims", Access::Read));
        assert!(Scopes::admin().allows("claims", Access::Write));
        assert_eq!(s.to_string(), "billing:read,wallets:write");
        assert_eq!(Scopes::parse(&s.to_string(), SERVICES).unwrap(), s);
    }

    #[test]
    fn malformed_or_unknown_scopes_are_refused() {
        assert!(matches!(
            Scopes::parse("wallets", SERVICES),
            Err(ScopeError::Malformed(_))
        ));
        assert!(matches!(
            Scopes::parse("wallets:delete", SERVICES),
            Err(ScopeError::Malformed(_))
        ));
        assert!(matches!(
            Scopes::parse("nope:read", SERVICES),
            Err(ScopeError::UnknownService(..))
        ));
        assert_eq!(Scopes::parse(" , ", SERVICES), Err(ScopeError::Empty));
    }
}
