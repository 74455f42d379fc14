//! What a certificate allows its holder to be. The CA writes the role into every certificate it
//! issues, and verifiers check it on every connection: a stolen worker key can then serve a
//! router requests but never act as a router towards other workers.

use std::fmt;
use std::str::FromStr;

use super::error::PkiError;

/// The part a node plays in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Accepts API calls and forwards them to workers; the only role workers accept QUIC from.
    Router,
    /// Runs an inference engine.
    Worker,
    /// Runs tools (MCP servers) for routers.
    Tools,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Router, Role::Worker, Role::Tools];

    /// The name used in certificates and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Router => "router",
            Role::Worker => "worker",
            Role::Tools => "tools",
        }
    }

    /// The inverse of [`Role::as_str`]; names are lowercase and exact.
    pub fn parse(name: &str) -> Result<Role, PkiError> {
        Role::ALL
            .into_iter()
            .find(|role| role.as_str() == name)
            .ok_or_else(|| PkiError::Role(name.to_string()))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = PkiError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_strangers_are_refused() {
        for role in Role::ALL {
            assert_eq!(Role::parse(role.as_str()).expect("parse"), role);
            assert_eq!(role.to_string().parse::<Role>().expect("parse"), role);
        }
        assert!(matches!(Role::parse("Router"), Err(PkiError::Role(_))));
        assert!(matches!(Role::parse("admin"), Err(PkiError::Role(_))));
        assert!(Role::parse("").is_err());
    }
}
