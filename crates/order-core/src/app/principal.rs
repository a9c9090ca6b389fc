//! Who asks: the authenticated principal of a request (or the service
//! itself), with its role. Roles are ordered: `Viewer` < `Operator` < `Admin`.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Case-insensitive name.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

/// The principal an action is done for (and audited under).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Principal {
    /// A key's name, a token's subject, `anonymous` or `system`.
    pub name: String,
    pub role: Role,
}

impl Principal {
    pub fn new(name: impl Into<String>, role: Role) -> Self {
        Self {
            name: name.into(),
            role,
        }
    }

    /// Requests when authentication is off: every role.
    pub fn anonymous() -> Self {
        Self::new("anonymous", Role::Admin)
    }

    /// The service acting by itself (automatic redrive).
    pub fn system() -> Self {
        Self::new("system", Role::Admin)
    }

    pub fn has(&self, role: Role) -> bool {
        self.role >= role
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parsed() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::parse(" Operator "), Some(Role::Operator));
        assert_eq!(Role::parse("root"), None);
        let op = Principal::new("ci-key", Role::Operator);
        assert!(op.has(Role::Viewer) && op.has(Role::Operator) && !op.has(Role::Admin));
    }
}
