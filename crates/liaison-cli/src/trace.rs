//! Rendering a trace: the ledger entries of one message or one case, in order.

use liaison_core::detail::Detail;
use liaison_core::{Entry, EntryKind, RecipientRole};
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

/// One line about an entry, read through its typed detail (an entry whose detail does not
/// read as its kind says is shown as such, not skipped).
fn summary(e: &Entry) -> String {
    let detail = match e.typed_detail() {
        Ok(detail) => detail,
        Err(error) => return format!("unreadable detail: {error}"),
    };
    match (e.kind, detail) {
        (_, Detail::Accepted(accepted)) => {
            let recipients: Vec<String> = accepted
                .recipients
                .iter()
                .map(|r| match r.role {
                    RecipientRole::Cc => format!("{} (cc)", r.agency),
                    RecipientRole::To => r.agency.to_string(),
                })
                .collect();
            format!(
                "{} via {} → {}",
                accepted.type_,
                accepted.channel,
                recipients.join(", ")
            )
        }
        (_, Detail::Rejected(rejected)) => format!("rejected: {}", rejected.code),
        (_, Detail::RejectionSummary(summary)) => {
            let codes: Vec<String> = summary
                .codes
                .iter()
                .map(|(code, n)| format!("{code} ×{n}"))
                .collect();
            format!(
                "{} refusals over the budget, summarized: {}",
                summary.total,
                codes.join(", ")
            )
        }
        (EntryKind::DeliveryFailed, Detail::Delivery(d)) => {
            format!("delivery failed: {}", d.error.unwrap_or_default())
        }
        (EntryKind::DeliveryDeadLettered, Detail::Delivery(d)) => {
            format!("dead-lettered: {}", d.reason.unwrap_or_default())
        }
        (EntryKind::DeliveryAcknowledged, _) => {
            "acknowledged by the agency (HTTPS inbox)".to_owned()
        }
        (EntryKind::DeliveryRedriven, Detail::Delivery(d)) => match d.by {
            Some(by) => format!("redriven from the dead-letter queue by {by} (console)"),
            None => "redriven from the dead-letter queue".to_owned(),
        },
        (_, Detail::Revealed(r)) => format!(
            "personal data revealed to {} in the {}: {}",
            e.agency.as_ref().map(|a| a.as_str()).unwrap_or("-"),
            r.via,
            r.fields.join(", ")
        ),
        (_, Detail::Erased(x)) => format!(
            "personal data of {} message(s) erased by {} ({}): {}",
            x.messages.len(),
            e.agency
                .as_ref()
                .map(|a| a.as_str())
                .unwrap_or("an operator"),
            x.via,
            x.basis
        ),
        (_, Detail::Delivery(_)) => "delivered to the agency's queue".to_owned(),
    }
}
