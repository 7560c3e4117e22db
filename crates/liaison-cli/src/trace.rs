//! Rendering a trace: the ledger entries of one message or one case, in order.

use liaison_core::{Entry, EntryKind};
use serde_json::Value;
use time::format_description::well_known::Rfc3339;

/// One line per entry: sequence, time, kind, acting agency, message, what happened.
pub fn render_text(entries: &[Entry]) -> String {
    let mut out = String::new();
    for e in entries {
        let at = e.at.format(&Rfc3339).unwrap_or_default();
        let agency = e.agency.as_ref().map_or("-", |a| a.as_str());
        let message = e.message.map_or_else(|| "-".to_owned(), |m| m.to_string());
        out.push_str(&format!(
            "#{:<6} {at}  {:<21} {:<14} {message}  {}\n",
            e.seq,
            e.kind.as_str(),
            agency,
            summary(e)
        ));
    }
    out
}

fn summary(e: &Entry) -> String {
    let d = &e.detail;
    let s = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("").to_owned();
    match e.kind {
        EntryKind::MessageAccepted => {
            let recipients: Vec<String> = d
                .get("recipients")
                .and_then(Value::as_array)
                .map(|rs| {
                    rs.iter()
                        .map(|r| {
                            let agency = r.get("agency").and_then(Value::as_str).unwrap_or("?");
                            match r.get("role").and_then(Value::as_str) {
                                Some("cc") => format!("{agency} (cc)"),
                                _ => agency.to_owned(),
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            format!(
                "{} via {} → {}",
                s("type"),
                s("channel"),
                recipients.join(", ")
            )
        }
        EntryKind::MessageRejected => format!("rejected: {}", s("code")),
        EntryKind::DeliveryDispatched => "delivered to the agency's queue".to_owned(),
        EntryKind::DeliveryFailed => format!("delivery failed: {}", s("error")),
        EntryKind::DeliveryAcknowledged => "acknowledged by the agency (HTTPS inbox)".to_owned(),
        EntryKind::DeliveryDeadLettered => format!("dead-lettered: {}", s("reason")),
        EntryKind::DeliveryRedriven => "redriven from the dead-letter queue".to_owned(),
    }
}
