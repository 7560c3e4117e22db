//! Agencies are data: a registry file names them, code never does.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// The URI prefix that names an agency in certificates (SAN URI) and in the
/// CloudEvents `source` attribute: `urn:liaison:agency:<code>`.
pub const AGENCY_URN_PREFIX: &str = "urn:liaison:agency:";

/// A short, stable agency code such as `eco` or `hotline12345`.
///
/// Lower-case ASCII letters, digits, `-` and `_`, starting with a letter or digit, at most
/// 64 characters: it is used in queue names, certificate URIs and RabbitMQ user names.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AgencyCode(String);

impl AgencyCode {
    pub fn new(code: impl Into<String>) -> Result<Self, InvalidAgencyCode> {
        let code = code.into();
        let ok = !code.is_empty()
            && code.len() <= 64
            && code
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            && code
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        if ok {
            Ok(Self(code))
        } else {
            Err(InvalidAgencyCode(code))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `urn:liaison:agency:<code>`, the form used in certificates and `source`.
    pub fn urn(&self) -> String {
        format!("{AGENCY_URN_PREFIX}{}", self.0)
    }

    /// Reads an agency code from its URN form; `None` for anything else.
    pub fn from_urn(urn: &str) -> Option<Self> {
        urn.strip_prefix(AGENCY_URN_PREFIX)
            .and_then(|c| Self::new(c).ok())
    }
}

/// The SAN URI prefix of an auditor's certificate: `urn:liaison:auditor:<name>`. An
/// auditor is no agency: it reads checkpoints, proofs and entries, and cosigns
/// checkpoints as a witness, and sends nothing.
pub const AUDITOR_URN_PREFIX: &str = "urn:liaison:auditor:";

/// The auditor named by a URN, when the name has the form of an agency code (lowercase
/// letters, digits, `_` and `-`).
pub fn auditor_from_urn(urn: &str) -> Option<String> {
    urn.strip_prefix(AUDITOR_URN_PREFIX)
        .filter(|name| AgencyCode::new(*name).is_ok())
        .map(str::to_owned)
}

impl fmt::Display for AgencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for AgencyCode {
    type Error = InvalidAgencyCode;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<AgencyCode> for String {
    fn from(value: AgencyCode) -> Self {
        value.0
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid agency code {0:?}: use lower-case letters, digits, '-' and '_'")]
pub struct InvalidAgencyCode(pub String);

/// One agency of the registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agency {
    pub code: AgencyCode,
    /// Official name in Chinese, e.g. 生态环境分局.
    pub name_zh: String,
    /// English name, e.g. "Ecology and Environment Bureau".
    pub name_en: String,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("cannot read agency registry {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("agency registry {path}: {message}")]
    Parse { path: String, message: String },
    #[error("agency registry {path}: agency {code} is listed twice")]
    Duplicate { path: String, code: AgencyCode },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(rename = "agency")]
    agencies: Vec<Agency>,
}

/// The set of agencies that may use the broker.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    agencies: BTreeMap<AgencyCode, Agency>,
}

impl Registry {
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text, &path.display().to_string())
    }

    /// Parses a registry; `origin` names the file in error messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| RegistryError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        let mut agencies = BTreeMap::new();
        for agency in file.agencies {
            let code = agency.code.clone();
            if agencies.insert(code.clone(), agency).is_some() {
                return Err(RegistryError::Duplicate {
                    path: origin.to_owned(),
                    code,
                });
            }
        }
        Ok(Self { agencies })
    }

    pub fn get(&self, code: &AgencyCode) -> Option<&Agency> {
        self.agencies.get(code)
    }

    pub fn contains(&self, code: &AgencyCode) -> bool {
        self.agencies.contains_key(code)
    }

    pub fn codes(&self) -> impl Iterator<Item = &AgencyCode> {
        self.agencies.keys()
    }

    pub fn agencies(&self) -> impl Iterator<Item = &Agency> {
        self.agencies.values()
    }

    pub fn len(&self) -> usize {
        self.agencies.len()
    }

    pub fn is_empty(&self) -> bool {
        self.agencies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_codes_are_restricted_to_queue_safe_characters() {
        assert!(AgencyCode::new("hotline12345").is_ok());
        assert!(AgencyCode::new("eco").is_ok());
        assert!(AgencyCode::new("").is_err());
        assert!(AgencyCode::new("Eco").is_err());
        assert!(AgencyCode::new("-eco").is_err());
        assert!(AgencyCode::new("eco.bureau").is_err());
        assert!(AgencyCode::new("a".repeat(65)).is_err());
    }

    #[test]
    fn urn_round_trips_and_rejects_other_schemes() {
        let eco = AgencyCode::new("eco").unwrap();
        assert_eq!(eco.urn(), "urn:liaison:agency:eco");
        assert_eq!(AgencyCode::from_urn(&eco.urn()), Some(eco));
        assert_eq!(AgencyCode::from_urn("urn:other:eco"), None);
        assert_eq!(AgencyCode::from_urn("urn:liaison:agency:ECO"), None);
    }

    #[test]
    fn registry_refuses_duplicates_and_unknown_keys() {
        let dup = r#"
            [[agency]]
            code = "eco"
            name_zh = "生态环境分局"
            name_en = "Ecology"
            [[agency]]
            code = "eco"
            name_zh = "x"
            name_en = "y"
        "#;
        assert!(matches!(
            Registry::from_toml(dup, "t"),
            Err(RegistryError::Duplicate { .. })
        ));
        let unknown = r#"
            [[agency]]
            code = "eco"
            name_zh = "生态环境分局"
            name_en = "Ecology"
            colour = "green"
        "#;
        assert!(matches!(
            Registry::from_toml(unknown, "t"),
            Err(RegistryError::Parse { .. })
        ));
    }
}
