#![doc = include_str!("../README.md")]

pub mod agency;
pub mod audit;
pub mod calendar;
pub mod caseref;
pub mod checkpoint;
pub mod clock;
pub mod clocks;
pub mod cosignature;
pub mod detail;
pub mod entry;
pub mod envelope;
pub mod file_error;
pub mod lifecycle;
pub mod merkle;
pub mod policy;
pub mod redact;
pub mod reject;

pub use agency::{Agency, AgencyCode, Registry, RegistryError};
pub use calendar::{CalendarError, HolidayCalendar, Period};
pub use clock::{Clock, ManualClock, SystemClock};
pub use entry::{Entry, EntryKind};
pub use envelope::{Channel, Envelope, EnvelopeError, Submission};
pub use file_error::FileError;
pub use lifecycle::{CaseMoves, Lifecycle, LifecycleError, ThreadStep};
pub use policy::{
    AnsweredBy, MandatoryRecipient, OriginalMessage, Policy, PolicyError, PolicyLoadError,
    Recipient, RecipientRole, Route, RuleRoute,
};
pub use redact::redact_url;
pub use reject::RejectCode;
