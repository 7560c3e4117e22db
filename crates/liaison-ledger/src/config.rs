//! How to reach the database and how large a group commit may grow.

use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LedgerConfig {
    pub database_url: String,
    pub max_connections: u32,
    /// The most jobs one transaction of the committer takes.
    pub batch_max: usize,
    /// Bounds connecting, acquiring a pooled connection and [`crate::Ledger::ping`].
    pub connect_timeout: Duration,
}

impl LedgerConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            ..Self::default()
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/liaison".to_owned(),
            max_connections: 8,
            batch_max: 1000,
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// The URL with any password replaced, fit for error messages and logs.
pub(crate) fn redacted_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_owned();
    };
    let rest = &url[scheme_end + 3..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    let Some(colon) = userinfo.find(':') else {
        return url.to_owned();
    };
    format!(
        "{}{}:***{}",
        &url[..scheme_end + 3],
        &userinfo[..colon],
        &rest[at..]
    )
}

#[cfg(test)]
mod tests {
    use super::redacted_url;

    #[test]
    fn hides_the_password_and_keeps_the_rest() {
        assert_eq!(
            redacted_url("postgres://app:s3cret@db.example:5432/liaison?sslmode=require"),
            "postgres://app:***@db.example:5432/liaison?sslmode=require"
        );
        assert_eq!(
            redacted_url("postgres://postgres@127.0.0.1:5432/x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            redacted_url("postgres://127.0.0.1/x"),
            "postgres://127.0.0.1/x"
        );
        assert_eq!(redacted_url("not a url"), "not a url");
    }
}
