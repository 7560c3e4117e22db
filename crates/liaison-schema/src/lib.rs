#![doc = include_str!("../README.md")]

pub mod admission;
mod catalogue;
mod docs;
mod error;
mod examples;
pub mod formats;
pub mod fuzzing;
mod info;
mod load;
mod parse;
mod source;
mod violation;

pub use admission::{Admission, Admitted, Refused};
pub use catalogue::{Catalogue, MessageType};
pub use docs::render_messages_md;
pub use error::CatalogueError;
pub use examples::{
    Example, ExampleFailure, ExampleSummary, Expectation, load_examples, load_examples_from,
};
pub use info::{ANY_TYPE, TypeInfo};
pub use load::DRAFT_2020_12;
pub use parse::{ParseError, ParseLimits, parse};
pub use source::CatalogueSource;
pub use violation::{ValidationError, Violation};
