#![doc = include_str!("../README.md")]

mod connection;
mod consumer;
mod dead;
mod deadline;
mod error;
mod publisher;
mod topology;

pub use connection::{Bus, BusConfig, QueueDepth};
pub use consumer::{Consumer, Delivery};
pub use dead::{
    DeadBy, DeadLetter, HEADER_DEAD_BY, HEADER_DEAD_REASON, HEADER_RECIPIENT, PROBLEM_CONTENT_TYPE,
    TYPE_PROBLEM,
};
pub use error::BusError;
pub use publisher::{
    APP_ID, CONTENT_TYPE, HEADER_CASEREF, HEADER_DELIVERY, HEADER_SEQ, HEADER_TRACEPARENT,
    Outgoing, PublishOutcome, Publisher,
};
pub use topology::{
    AGENCY_QUEUE_PREFIX, EXCHANGE_DELIVER, EXCHANGE_DLX, EXCHANGE_INTAKE, EXCHANGES,
    IntakeQueueLimits, QUEUE_DEAD, QUEUE_DEAD_LEDGER, QUEUE_INTAKE, QueuePlan, agency_queue,
    queue_plan,
};
