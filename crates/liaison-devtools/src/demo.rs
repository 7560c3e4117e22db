//! `liaison demo`: one lead travels between agencies through the real services.
//!
//! The environment bureau (`eco`) posts a public-interest-litigation lead over HTTPS with
//! its client certificate; the procuratorate's system receives it from its own RabbitMQ
//! queue and answers with a receipt; `eco` pulls the receipt from its HTTPS inbox and acks
//! it; `eco` transfers a criminal case naming only the police and the procuratorate's
//! supervisory copy is kept; the police let the filing review run out, so the deadline
//! watcher reminds them (the procuratorate copied), then they decide; the case's trace,
//! timeline, clocks and state are read back from the ledger. Clocks run in trial time
//! (`clocks.trial_day`): a day of the law lasts a second. Every step checks what it got.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use liaison_bus::{Bus, agency_queue};
use liaison_core::{AgencyCode, Entry, EntryKind};
use liaison_ledger::TraceKey;
use liaison_pki::{PkiLayout, PkiOptions};
use liaison_server::{Broker, Config};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::services;
use liaison_client::AgencyClient;

/// What the scenario established, for callers (tests) that want to check more.
#[derive(Debug)]
pub struct ScenarioReport {
    pub caseref: String,
    pub lead_id: Uuid,
    pub lead_seq: u64,
    pub receipt_id: Uuid,
    pub receipt_seq: u64,
    pub trace: Vec<Entry>,
    /// The scenario's cases with their states and timelines, as `liaison cases show` prints them.
    pub cases: Vec<liaison_ledger::CaseView>,
}

/// Prepares everything the demo needs on this machine: services, database, PKI.
pub async fn prepare(config: &Config) -> anyhow::Result<()> {
    services::ensure_all()?;
    liaison_ledger::ensure_database(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "creating the database of {}",
                liaison_server::config::redact_url(&config.database_url)
            )
        })?;
    let registry = config.load_registry()?;
    let options = PkiOptions {
        origin: config.ledger.origin.clone(),
        ..PkiOptions::default()
    };
    let summary = liaison_pki::ensure(&config.tls_dir, &registry, &options)
        .with_context(|| format!("development PKI in {}", config.tls_dir.display()))?;
    println!(
        "✓ development PKI in {} ({} agency certificates)",
        summary.dir.display(),
        summary.agencies
    );
    Ok(())
}

/// The two database roles of `deploy/postgres/roles.sql`, in the demo too.
const ROLES_SQL: &str = include_str!("../../../deploy/postgres/roles.sql");

/// Runs the broker as `liaison_broker`, the role that may only append to the ledger, as a
/// production broker does (`docs/operations.md`): the schema is brought up to date as the
/// owner, `roles.sql` grants the broker role what it needs, and the broker then refuses to
/// start as anything more privileged. Where that cannot be done (no `psql`, an owner that
/// may not create roles) the demo says so and runs as the owner, with the broker's warning.
async fn run_as_broker_role(config: &mut Config) {
    let owner_url = config.database_url.clone();
    let prepared = async {
        // Opening the ledger as the owner applies the migrations.
        let ledger = crate::open_ledger(config).await?;
        drop(ledger);
        let mut psql = std::process::Command::new("psql")
            .arg(&owner_url)
            .args(["-v", "ON_ERROR_STOP=1", "-q", "-f", "-"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .context("running psql")?;
        if let Some(mut stdin) = psql.stdin.take() {
            use std::io::Write;
            stdin.write_all(ROLES_SQL.as_bytes())?;
        }
        let output = psql.wait_with_output()?;
        ensure!(
            output.status.success(),
            "psql: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        with_user(&owner_url, "liaison_broker")
    }
    .await;
    match prepared {
        Ok(broker_url) => {
            config.database_url = broker_url;
            config.ledger.require_unprivileged_role = true;
            println!(
                "✓ the broker runs as the database role liaison_broker: INSERT and SELECT on the ledger, nothing more (deploy/postgres/roles.sql)"
            );
        }
        Err(e) => println!(
            "! the broker runs as the database owner, which could disable the append-only triggers ({e:#}); see docs/operations.md"
        ),
    }
}

/// `url` with its user replaced by `user` (and no password: the demo's server trusts
/// local connections).
pub fn with_user(url: &str, user: &str) -> anyhow::Result<String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| anyhow!("the database URL has no scheme"))?;
    let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
    Ok(format!("{scheme}://{user}@{host}"))
}

/// `liaison demo [--once]`.
/// How the command line prints what the demo found: the trace and each case.
pub struct Renderers {
    pub trace: fn(&[Entry]) -> String,
    pub case: fn(&liaison_ledger::CaseView) -> String,
}

pub async fn run(mut config: Config, once: bool, render: Renderers) -> anyhow::Result<()> {
    if once {
        // The one-shot demo must not collide with a broker already serving on the defaults.
        config.listen.set_port(0);
        config.ops_listen.set_port(0);
    }
    // A demonstration: it may sign checkpoints under the shared demo origin.
    config.demo = true;
    // The county government administers the demo: its certificate opens the console.
    if config.admins.is_empty() {
        config.admins = vec![code("gov")];
    }
    // A day of every legal clock lasts a second, so that the filing review's reminders
    // come while the demo watches.
    config.clocks.trial_day = Some(Duration::from_secs(1));
    config.clocks.scan_interval = Duration::from_millis(250);
    prepare(&config).await?;
    run_as_broker_role(&mut config).await;
    let broker = Broker::start(config.clone())
        .await
        .context("starting the broker")?;
    println!(
        "✓ broker serving HTTPS on {} and operations on http://{}",
        broker.https_addr, broker.ops_addr
    );

    let result = scenario(
        &config,
        &format!("https://localhost:{}", broker.https_addr.port()),
    )
    .await;
    match &result {
        Ok(report) => {
            println!(
                "\nTrace of case {}:\n{}",
                report.caseref,
                (render.trace)(&report.trace)
            );
            println!("Cases:");
            for case in &report.cases {
                println!("{}", (render.case)(case));
            }
            println!("✓ demo scenario passed");
        }
        Err(e) => println!("✗ demo scenario failed: {e:#}"),
    }
    if !once && result.is_ok() {
        println!(
            "\nliaison keeps serving: https://localhost:{port} (client certificates in {dir}), \
             ops http://{ops} (/healthz, /readyz, /metrics).\n\
             The administrators' console: https://localhost:{port}/console/ with {admins}'s \
             certificate, {dir}/agencies/<code>.p12 (README, \"Opening the console\"). Ctrl-C stops it.",
            port = broker.https_addr.port(),
            dir = config.tls_dir.display(),
            ops = broker.ops_addr,
            admins = config
                .admins
                .iter()
                .map(AgencyCode::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        );
        tokio::signal::ctrl_c().await.ok();
    }
    broker.shutdown(Duration::from_secs(5)).await;
    result.map(|_| ())
}

fn code(s: &str) -> AgencyCode {
    AgencyCode::new(s).unwrap_or_else(|e| panic!("demo agency code: {e}"))
}

fn now() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default()
}

/// A realistic lead: an outfall on a tributary of the Hei River discharging untreated water.
pub fn lead_event(caseref: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": Uuid::now_v7(),
        "source": code("eco").urn(),
        "type": "pil.lead.v1",
        "time": now(),
        "subject": "黑河山丹段支流排污口异常排放",
        "datacontenttype": "application/json",
        "caseref": caseref,
        "data": {
            "domain": "ecology_resources",
            "summary": "清泉镇黑河支流右岸一处排污口夜间排放深色污水，疑似未经处理的工业废水。",
            "location": { "address": "甘肃省张掖市山丹县清泉镇黑河支流右岸排污口", "latitude": 38.78, "longitude": 101.09 },
            "discovered_at": now(),
            "harm": "下游约三公里河段水体发黑、有异味，可能损害黑河水生态和下游灌溉用水安全。",
            "urgency": "urgent",
            "evidence": [{
                "title": "现场照片（夜间排放）",
                "uri": "evidence/SD-ECO-0001/photo-001.jpg",
                "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
                "media_type": "image/jpeg"
            }]
        }
    })
}

/// A criminal case transfer from eco to the police that names only the police: the
/// procuratorate's supervisory copy is kept all the same.
pub fn transfer_event(caseref: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": Uuid::now_v7(),
        "source": code("eco").urn(),
        "type": "case.transfer.v1",
        "time": now(),
        "subject": "某化工企业非法排放有毒物质案移送",
        "datacontenttype": "application/json",
        "caseref": caseref,
        "recipients": ["police"],
        "data": {
            "case_name": "山丹县某化工企业非法排放含重金属废水案",
            "administrative_case_number": "山环执〔2026〕31号",
            "transfer_document_number": "山环移〔2026〕7号",
            "suspected_offence": "污染环境罪",
            "facts": "监测显示该企业排污口废水总铬超标二十余倍，排入黑河支流，已造成下游河段污染。",
            "suspects": [{
                "kind": "organisation",
                "name": "山丹县某化工有限公司",
                "id_number": "91620725MA71B8QX55"
            }],
            "enterprise_related": false,
            "transferred_at": now(),
            "evidence": [{
                "title": "水质监测报告",
                "uri": "evidence/SD-ECO-0031/monitoring.pdf",
                "sha256": "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9",
                "media_type": "application/pdf"
            }],
            "handler": { "department": "生态环境综合行政执法大队", "name": "李某" }
        }
    })
}

pub fn receipt_event(caseref: &str, answers: Uuid) -> Value {
    json!({
        "specversion": "1.0",
        "id": Uuid::now_v7(),
        "source": code("procuratorate").urn(),
        "type": "receipt.v1",
        "time": now(),
        "datacontenttype": "application/json",
        "caseref": caseref,
        "inreplyto": answers,
        "data": {
            "received_at": now(),
            "note": "已签收，转公益诉讼检察部门审查。",
            "handler": { "department": "第五检察部" }
        }
    })
}

/// The police's decision to file the transferred case `answers`.
pub fn filing_decision_event(answers: Uuid) -> Value {
    json!({
        "specversion": "1.0",
        "id": Uuid::now_v7(),
        "source": code("police").urn(),
        "type": "case.filing-decision.v1",
        "time": now(),
        "datacontenttype": "application/json",
        "inreplyto": answers,
        "data": {
            "decision": "file",
            "decided_at": now(),
            "document_number": "山公（食药环）立字〔2026〕31号",
            "police_case_number": "A6207250000002026120031",
            "legal_basis": "《中华人民共和国刑事诉讼法》第一百一十二条"
        }
    })
}

/// Runs the scenario against a broker at `base`; each failure names its step.
pub async fn scenario(config: &Config, base: &str) -> anyhow::Result<ScenarioReport> {
    let layout = PkiLayout {
        dir: config.tls_dir.clone(),
    };
    let eco = AgencyClient::new(&layout, &code("eco"), base)?;
    let procuratorate = AgencyClient::new(&layout, &code("procuratorate"), base)?;
    let bus = Bus::connect(config.bus_config()).await?;
    let mut procuratorate_queue = bus
        .consume(&agency_queue(&code("procuratorate")), 50)
        .await?;
    let caseref = format!(
        "SD-PIL-{}-{}",
        OffsetDateTime::now_utc().year(),
        &Uuid::new_v4().simple().to_string()[..8]
    );
    println!("\nScenario: case {caseref}");

    // 1. eco posts the lead over HTTPS.
    let lead = lead_event(&caseref);
    let lead_id = Uuid::parse_str(lead["id"].as_str().unwrap_or_default())?;
    let answer = eco
        .submit(&lead)
        .await
        .context("step 1 (eco posts the lead)")?;
    ensure!(
        answer.status == 202,
        "step 1 (eco posts the lead): expected 202, got {} {}",
        answer.status,
        answer.body
    );
    let lead_seq = answer.body["seq"]
        .as_u64()
        .ok_or_else(|| anyhow!("step 1: no ledger seq in {}", answer.body))?;
    let route: Vec<&str> = answer.body["recipients"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["agency"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        route == ["procuratorate"],
        "step 1: expected the lead routed to the procuratorate, got {route:?}"
    );
    println!(
        "✓ 1. eco → POST /v1/messages pil.lead.v1 {lead_id}: 202, ledger seq {lead_seq}, route → {}",
        route.join(", ")
    );

    // 2. The procuratorate's system receives it from its own queue over AMQP.
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivered = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "step 2 (procuratorate consumes the lead): not delivered within 20 s"
        );
        let Some(delivery) = procuratorate_queue.next(left).await? else {
            continue;
        };
        delivery.ack().await?;
        if delivery.message_id == Some(lead_id) {
            break delivery;
        }
    };
    ensure!(
        delivered.body.as_ref() == serde_json::to_vec(&lead)?.as_slice(),
        "step 2: the delivered lead differs from the bytes eco sent"
    );
    println!(
        "✓ 2. procuratorate ← AMQP {}: the lead, byte for byte (ledger seq {})",
        agency_queue(&code("procuratorate")),
        delivered.seq.unwrap_or_default()
    );

    // 3. The procuratorate posts a receipt answering the lead.
    let receipt = receipt_event(&caseref, lead_id);
    let receipt_id = Uuid::parse_str(receipt["id"].as_str().unwrap_or_default())?;
    let answer = procuratorate
        .submit(&receipt)
        .await
        .context("step 3 (procuratorate posts the receipt)")?;
    ensure!(
        answer.status == 202,
        "step 3 (procuratorate posts the receipt): expected 202, got {} {}",
        answer.status,
        answer.body
    );
    let receipt_seq = answer.body["seq"]
        .as_u64()
        .ok_or_else(|| anyhow!("step 3: no ledger seq"))?;
    let to: Vec<&str> = answer.body["recipients"]
        .as_array()
        .map(|rs| rs.iter().filter_map(|r| r["agency"].as_str()).collect())
        .unwrap_or_default();
    ensure!(
        to == ["eco"],
        "step 3: expected the receipt routed back to eco, got {to:?}"
    );
    println!(
        "✓ 3. procuratorate → POST /v1/messages receipt.v1 {receipt_id}: 202, ledger seq {receipt_seq}, route → eco"
    );

    // 4. eco pulls the receipt from its HTTPS inbox and acknowledges it.
    let deadline = Instant::now() + Duration::from_secs(20);
    let delivery = 'found: loop {
        ensure!(
            Instant::now() < deadline,
            "step 4 (eco pulls the receipt): not in eco's inbox within 20 s"
        );
        let pulled = eco
            .pull(5, 50)
            .await
            .context("step 4 (eco pulls its inbox)")?;
        ensure!(
            pulled.status == 200,
            "step 4: inbox answered {} {}",
            pulled.status,
            pulled.body
        );
        for d in pulled.body["deliveries"].as_array().into_iter().flatten() {
            let id = d["delivery"]
                .as_i64()
                .ok_or_else(|| anyhow!("step 4: delivery without id"))?;
            let ack = eco.ack(id).await?;
            ensure!(ack.status == 204, "step 4: ack answered {}", ack.status);
            if d["message_id"].as_str() == Some(&receipt_id.to_string()) {
                break 'found d.clone();
            }
        }
    };
    ensure!(
        delivery["event"] == receipt,
        "step 4: the pulled receipt differs from what the procuratorate sent"
    );
    println!(
        "✓ 4. eco ← GET /v1/inbox: the receipt (delivery {}), acknowledged",
        delivery["delivery"]
    );

    // 5. eco transfers a criminal case naming only the police; the procuratorate's
    //    supervisory copy cannot be removed, and arrives in its queue.
    let transfer = transfer_event(&format!("{caseref}-XF"));
    let transfer_id = Uuid::parse_str(transfer["id"].as_str().unwrap_or_default())?;
    let answer = eco
        .submit(&transfer)
        .await
        .context("step 5 (eco transfers a case to the police)")?;
    ensure!(
        answer.status == 202,
        "step 5 (eco transfers a case): expected 202, got {} {}",
        answer.status,
        answer.body
    );
    let routed: Vec<(&str, &str)> = answer.body["recipients"]
        .as_array()
        .map(|rs| {
            rs.iter()
                .filter_map(|r| Some((r["agency"].as_str()?, r["role"].as_str()?)))
                .collect()
        })
        .unwrap_or_default();
    ensure!(
        routed == [("police", "to"), ("procuratorate", "cc")],
        "step 5: expected the transfer to the police with the procuratorate's copy, got {routed:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "step 5 (procuratorate receives the supervisory copy): not delivered within 20 s"
        );
        let Some(delivery) = procuratorate_queue.next(left).await? else {
            continue;
        };
        delivery.ack().await?;
        if delivery.message_id == Some(transfer_id) {
            break;
        }
    }
    println!(
        "✓ 5. eco → case.transfer.v1 {transfer_id} naming only the police: 202, route → police, procuratorate (supervisory copy, mandatory); the procuratorate received it"
    );

    // 6. The police let the three-day filing review run out (three seconds in trial time):
    //    the deadline watcher reminds them a day before and at the due instant, in eco's
    //    name, copying the procuratorate; then they file the case, late.
    let police = AgencyClient::new(&layout, &code("police"), base)?;
    let mut notices: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while notices.len() < 2 {
        ensure!(
            Instant::now() < deadline,
            "step 6 (the filing review's notices reach the police): got {} of 2 within 30 s",
            notices.len()
        );
        let pulled = police
            .pull(5, 50)
            .await
            .context("step 6 (police pull their inbox)")?;
        for d in pulled.body["deliveries"].as_array().into_iter().flatten() {
            if let Some(id) = d["delivery"].as_i64() {
                police.ack(id).await?;
            }
            if d["type"] == "deadline.reminder.v1"
                && d["event"]["inreplyto"] == json!(transfer_id.to_string())
                && d["event"]["data"]["clock"] == "filing_review"
            {
                notices.push(d["event"].clone());
            }
        }
    }
    let stages: Vec<&str> = notices
        .iter()
        .filter_map(|n| n["data"]["stage"].as_str())
        .collect();
    ensure!(
        stages.starts_with(&["reminder", "overdue"]),
        "step 6: expected a reminder then an overdue notice, got {stages:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        ensure!(
            !left.is_zero(),
            "step 6 (the procuratorate's copy of the overdue notice): not delivered within 20 s"
        );
        let Some(delivery) = procuratorate_queue.next(left).await? else {
            continue;
        };
        delivery.ack().await?;
        let event: Value = serde_json::from_slice(&delivery.body)?;
        if event["type"] == "deadline.reminder.v1"
            && event["data"]["clock"] == "filing_review"
            && event["data"]["stage"] == "overdue"
        {
            break;
        }
    }
    let decision = filing_decision_event(transfer_id);
    let answer = police
        .submit(&decision)
        .await
        .context("step 6 (police send the filing decision)")?;
    ensure!(
        answer.status == 202,
        "step 6 (police send the filing decision): expected 202, got {} {}",
        answer.status,
        answer.body
    );
    println!(
        "✓ 6. filing review (3 days; a second each here): reminder and overdue notice to the police, procuratorate copied; the police then file the case"
    );

    // 7. The ledger holds every event of the case.
    let ledger = crate::open_ledger(config).await?;
    let key = TraceKey::Case(caseref.clone());
    let expected = [
        (lead_id, EntryKind::MessageAccepted),
        (lead_id, EntryKind::DeliveryDispatched),
        (receipt_id, EntryKind::MessageAccepted),
        (receipt_id, EntryKind::DeliveryDispatched),
        (receipt_id, EntryKind::DeliveryAcknowledged),
    ];
    let deadline = Instant::now() + Duration::from_secs(10);
    let trace = loop {
        let trace = ledger.trace(&key).await?;
        let missing: Vec<_> = expected
            .iter()
            .filter(|(id, kind)| {
                !trace
                    .iter()
                    .any(|e| e.message == Some(*id) && e.kind == *kind)
            })
            .collect();
        if missing.is_empty() {
            break trace;
        }
        if Instant::now() >= deadline {
            bail!("step 7 (trace the case): the ledger lacks {missing:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("✓ 7. ledger: {} entries for case {caseref}", trace.len());

    // 8. Each matter is a case with a state: the lead was received by its addressee, the
    //    transfer was filed, late, its clock stopped by the answer.
    let mut cases = Vec::new();
    for (case, expected) in [
        (caseref.clone(), "received"),
        (format!("{caseref}-XF"), "filed"),
    ] {
        let view = ledger
            .case(&case)
            .await?
            .ok_or_else(|| anyhow!("step 8: no case {case}"))?;
        ensure!(
            view.head.state.as_deref() == Some(expected),
            "step 8: case {case} is {:?}, expected {expected}",
            view.head.state
        );
        cases.push(view);
    }
    println!(
        "✓ 8. cases: the lead is received; the transfer is filed, its filing review answered late"
    );
    procuratorate_queue.close().await;
    bus.close().await;
    Ok(ScenarioReport {
        caseref,
        lead_id,
        lead_seq,
        receipt_id,
        receipt_seq,
        trace,
        cases,
    })
}
