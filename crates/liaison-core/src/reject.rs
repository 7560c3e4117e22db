//! Stable rejection codes: the contract with agency integrators.
//!
//! Every answer that is not `202 Accepted` carries one of these codes in its RFC 9457
//! problem document (`code` member) and in the ledger event that records the rejection.
//! A code, once published, keeps its meaning; a retired code is never reused.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    /// The request body is not valid UTF-8.
    InvalidUtf8,
    /// The request body is not well-formed JSON.
    MalformedJson,
    /// The JSON nests deeper than the configured limit.
    TooDeep,
    /// The request body is larger than the configured limit.
    BodyTooLarge,
    /// The request's content type is not a JSON CloudEvent.
    UnsupportedMediaType,
    /// The CloudEvents envelope breaks the envelope schema.
    EnvelopeInvalid,
    /// The `type` attribute names no message type of the catalogue.
    UnknownType,
    /// The payload (`data`) breaks the schema of its type.
    PayloadInvalid,
    /// The authenticated agency is not in the registry.
    UnknownAgency,
    /// `source` names an agency other than the authenticated sender.
    SourceMismatch,
    /// The policy does not allow this sender to send this type.
    TypeNotAllowed,
    /// `recipients` names an agency the policy does not route this message to.
    RecipientsNotAllowed,
    /// `inreplyto` names a message the ledger does not hold, or one this sender did not receive.
    UnknownOriginal,
    /// The message id was already used for a message with different bytes.
    IdConflict,
    /// No client certificate, or one that does not name an agency.
    Unauthenticated,
    /// The resource does not exist or is not visible to this agency.
    NotFound,
    /// The broker cannot record the message right now; retry later with the same bytes.
    Unavailable,
    /// An unexpected failure inside the broker.
    Internal,
    /// The agency sent more requests than its configured rate allows; retry after the
    /// `Retry-After` delay.
    RateLimited,
    /// The request (headers and body) did not arrive within the configured time.
    RequestTimeout,
    /// The agency is authenticated but may not use this resource (e.g. traces are for
    /// the administrators named in the configuration).
    Forbidden,
    /// `inreplyto` names a message of a type this type does not answer (the catalogue's
    /// `x-liaison.answers`), or this type answers nothing.
    AnswerTypeMismatch,
    /// The sender received the original only as a copy (or sent it): only its addressees
    /// answer it.
    NotAnAddressee,
    /// The agency holds as many requests, long polls or connections at once as it may;
    /// retry when one of them has finished. The cap is per agency, so that no agency can
    /// take the gateway's capacity from the others.
    ConcurrencyLimited,
    /// The message carries another case reference than the message it answers.
    CaserefMismatch,
    /// A case reference of the form liaison assigns (`ECO-2026-000123`) that names no case:
    /// only liaison hands those out.
    CaserefUnknown,
    /// The case exists and the sender is none of its parties (the senders and recipients
    /// of its messages).
    NotAParty,
    /// The message is no legal transition of its case's thread in the state it met.
    InvalidTransition,
    /// The period in which the sender could act (an objection, a request for
    /// reconsideration) ran out before the message arrived.
    WindowClosed,
    /// A query or path parameter of the request cannot be read (not a number where one is
    /// expected, not UTF-8, an unknown value) or is out of range (a tree size of 0, a range
    /// whose ends are reversed, a date that is none); `detail` says which.
    InvalidParameter,
    /// The message's personal data was erased (PIPL Art. 47): its body can no longer be
    /// read; `ledger_seq` is the `case.erased` entry.
    Erased,
    /// The case cannot be erased: some of its bodies are stored in clear (before bodies
    /// were sealed), or the broker has no key-encryption key.
    NotErasable,
}

impl RejectCode {
    pub const ALL: [RejectCode; 32] = [
        Self::InvalidUtf8,
        Self::MalformedJson,
        Self::TooDeep,
        Self::BodyTooLarge,
        Self::UnsupportedMediaType,
        Self::EnvelopeInvalid,
        Self::UnknownType,
        Self::PayloadInvalid,
        Self::UnknownAgency,
        Self::SourceMismatch,
        Self::TypeNotAllowed,
        Self::RecipientsNotAllowed,
        Self::UnknownOriginal,
        Self::IdConflict,
        Self::Unauthenticated,
        Self::NotFound,
        Self::Unavailable,
        Self::Internal,
        Self::RateLimited,
        Self::RequestTimeout,
        Self::Forbidden,
        Self::AnswerTypeMismatch,
        Self::NotAnAddressee,
        Self::ConcurrencyLimited,
        Self::CaserefMismatch,
        Self::CaserefUnknown,
        Self::NotAParty,
        Self::InvalidTransition,
        Self::WindowClosed,
        Self::InvalidParameter,
        Self::Erased,
        Self::NotErasable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::TooDeep => "too_deep",
            Self::BodyTooLarge => "body_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::EnvelopeInvalid => "envelope_invalid",
            Self::UnknownType => "unknown_type",
            Self::PayloadInvalid => "payload_invalid",
            Self::UnknownAgency => "unknown_agency",
            Self::SourceMismatch => "source_mismatch",
            Self::TypeNotAllowed => "type_not_allowed",
            Self::RecipientsNotAllowed => "recipients_not_allowed",
            Self::UnknownOriginal => "unknown_original",
            Self::IdConflict => "id_conflict",
            Self::Unauthenticated => "unauthenticated",
            Self::NotFound => "not_found",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            Self::RateLimited => "rate_limited",
            Self::RequestTimeout => "request_timeout",
            Self::Forbidden => "forbidden",
            Self::AnswerTypeMismatch => "answer_type_mismatch",
            Self::NotAnAddressee => "not_an_addressee",
            Self::ConcurrencyLimited => "concurrency_limited",
            Self::CaserefMismatch => "caseref_mismatch",
            Self::CaserefUnknown => "caseref_unknown",
            Self::NotAParty => "not_a_party",
            Self::InvalidTransition => "invalid_transition",
            Self::WindowClosed => "window_closed",
            Self::InvalidParameter => "invalid_parameter",
            Self::Erased => "erased",
            Self::NotErasable => "not_erasable",
        }
    }

    /// The HTTP status that goes with the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::InvalidUtf8 | Self::MalformedJson | Self::TooDeep | Self::InvalidParameter => 400,
            Self::BodyTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::EnvelopeInvalid | Self::UnknownType | Self::PayloadInvalid => 422,
            Self::UnknownOriginal => 422,
            Self::UnknownAgency
            | Self::SourceMismatch
            | Self::TypeNotAllowed
            | Self::RecipientsNotAllowed => 403,
            Self::IdConflict => 409,
            Self::Unauthenticated => 401,
            Self::NotFound => 404,
            Self::Unavailable => 503,
            Self::Internal => 500,
            Self::RateLimited => 429,
            Self::RequestTimeout => 408,
            Self::Forbidden => 403,
            Self::AnswerTypeMismatch => 422,
            Self::NotAnAddressee => 403,
            Self::ConcurrencyLimited => 429,
            Self::CaserefMismatch | Self::CaserefUnknown | Self::WindowClosed => 422,
            Self::NotAParty => 403,
            Self::InvalidTransition => 409,
            Self::Erased => 410,
            Self::NotErasable => 409,
        }
    }

    /// A short human title for the problem document.
    pub fn title(self) -> &'static str {
        match self {
            Self::InvalidUtf8 => "Body is not valid UTF-8",
            Self::MalformedJson => "Body is not well-formed JSON",
            Self::TooDeep => "JSON nests too deeply",
            Self::BodyTooLarge => "Body is too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::EnvelopeInvalid => "CloudEvents envelope is invalid",
            Self::UnknownType => "Unknown message type",
            Self::PayloadInvalid => "Payload does not match its schema",
            Self::UnknownAgency => "Agency is not registered",
            Self::SourceMismatch => "source does not match the authenticated agency",
            Self::TypeNotAllowed => "Sender may not send this message type",
            Self::RecipientsNotAllowed => "Recipients are not allowed by the routing policy",
            Self::UnknownOriginal => "inreplyto names no message this agency received",
            Self::IdConflict => "Message id already used with different content",
            Self::Unauthenticated => "Client is not authenticated",
            Self::NotFound => "Not found",
            Self::Unavailable => "Broker temporarily unavailable",
            Self::Internal => "Internal error",
            Self::RateLimited => "Too many requests from this agency",
            Self::RequestTimeout => "Request did not arrive in time",
            Self::Forbidden => "This agency may not use this resource",
            Self::AnswerTypeMismatch => "This message type does not answer the original's type",
            Self::NotAnAddressee => "Only the addressees of a message answer it",
            Self::ConcurrencyLimited => "Too many requests in progress for this agency",
            Self::CaserefMismatch => "The case reference differs from the original's",
            Self::CaserefUnknown => "This case reference names no case",
            Self::NotAParty => "The sender is not a party of this case",
            Self::InvalidTransition => "Not a legal step of the case in its current state",
            Self::WindowClosed => "The period for this step has run out",
            Self::InvalidParameter => {
                "A parameter of the request is out of range or cannot be read"
            }
            Self::Erased => "The message's personal data was erased",
            Self::NotErasable => "This case cannot be erased",
        }
    }

    /// Whether retrying the same request later may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(
            self,
            Self::Unavailable
                | Self::Internal
                | Self::RateLimited
                | Self::RequestTimeout
                | Self::ConcurrencyLimited
        )
    }
}

impl std::fmt::Display for RejectCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_match_their_serde_names() {
        let mut seen = std::collections::HashSet::new();
        for code in RejectCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {code}");
            let json = serde_json::to_value(code).unwrap();
            assert_eq!(json, serde_json::Value::String(code.as_str().to_owned()));
            assert!((400..600).contains(&code.http_status()));
        }
    }
}
