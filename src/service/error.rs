//! Why the controller's domain code (plan, store) refuses a request, in its own words; only
//! the `http` layer turns a [`Refusal`] into a status code.

use super::store::StoreError;

/// A refused or failed operation, with a message that names the field or object at fault.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    /// The request itself is wrong (a field out of range, a name twice): HTTP 400.
    Invalid(String),
    /// It names something that does not exist: 404.
    NotFound(String),
    /// It contradicts the stored state (a job placed elsewhere, a finished job): 409.
    Conflict(String),
    /// Valid, but no layout can satisfy it (too many jobs, no memory fits): 422.
    Unfit(String),
    /// The controller's own failure (database, a stored record it cannot read): 500.
    Internal(String),
}

impl Refusal {
    /// The message, without the kind.
    pub fn message(&self) -> &str {
        match self {
            Refusal::Invalid(m)
            | Refusal::NotFound(m)
            | Refusal::Conflict(m)
            | Refusal::Unfit(m)
            | Refusal::Internal(m) => m,
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.message())
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Refusal {
        match e {
            StoreError::Conflict(m) => Refusal::Conflict(m),
            StoreError::NotFound(m) => Refusal::NotFound(m),
            StoreError::Db(e) => Refusal::Internal(format!("database: {e}")),
            StoreError::Schema(m) => Refusal::Internal(m),
        }
    }
}
