//! The broker's background tasks: the relay that delivers the outbox, the recorder of dead
//! letters, the AMQP intake, the checkpointer and the deadline watcher.

pub mod checkpointing;
pub mod clock_watcher;
pub mod dead_letters;
pub mod intake;
pub mod redrive;
pub mod relay;
pub mod reopen;
pub mod retention;

use liaison_bus::Outgoing;
use liaison_ledger::PendingDelivery;

/// What the bus publishes for one outbox row: the ledger's bytes with headers the broker
/// builds (also what a redrive republishes).
pub fn outgoing(row: &PendingDelivery) -> Outgoing {
    Outgoing {
        delivery_id: row.delivery_id,
        recipient: row.recipient.clone(),
        message_id: row.message_id,
        type_: row.type_.clone(),
        seq: row.seq,
        caseref: row.caseref.clone(),
        traceparent: row.traceparent.clone(),
        body: row.body.clone(),
    }
}
