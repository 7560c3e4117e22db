//! Legal clocks through the running broker, with time moved by a manual clock instead of
//! waited for: a transfer's filing review reminds the police (copying the procuratorate)
//! before and at its due instant, which National Day pushes back, and never again — not
//! after a restart, not once the police answered; a filing decision in time stops the
//! clock; a request for reconsideration after its window is refused `window_closed`; an
//! urgent recommendation's 15-day reply clock is escalated to the county government; and
//! two broker instances on one database send each notice exactly once.

use std::sync::Arc;
use std::time::Duration;

use liaison_client::AgencyClient;
use liaison_core::ManualClock;
use liaison_ledger::Ledger;
use liaison_server::Broker;
use liaison_server::workers::clock_watcher::ScanReport;
use liaison_tests::{World, answering, example_on};
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::macros::datetime;
use time::{Duration as Span, OffsetDateTime};

/// The watcher scans when the test says so (`Broker::scan_clocks`), not on its own timer
/// as well: a test that moved its clock must not race the background round.
fn quiet_watcher(mut world: World) -> World {
    world.config.clocks.scan_interval = Duration::from_secs(24 * 3600);
    world
}

async fn accepted(client: &AgencyClient, event: &Value) -> Value {
    let answer = client.submit(event).await.unwrap();
    assert_eq!(answer.status, 202, "{} {}", event["type"], answer.body);
    answer.body
}

async fn scan(broker: &Broker) -> ScanReport {
    broker
        .scan_clocks()
        .await
        .expect("the watcher runs")
        .expect("clocks are readable")
}

/// Pulls `client`'s inbox until it has received `n` deadline notices of `caseref`,
/// acknowledging everything it pulls; returns the notices' events.
async fn notices(client: &AgencyClient, caseref: &str, n: usize) -> Vec<Value> {
    let mut found = Vec::new();
    for _ in 0..30 {
        if found.len() >= n {
            break;
        }
        let pulled = client.pull(2, 50).await.unwrap();
        assert_eq!(pulled.status, 200, "{}", pulled.body);
        for delivery in pulled.body["deliveries"].as_array().unwrap() {
            let ack = client
                .ack(delivery["delivery"].as_i64().unwrap())
                .await
                .unwrap();
            assert!(ack.status < 300, "{}", ack.body);
            if delivery["type"] == "deadline.reminder.v1" && delivery["caseref"] == caseref {
                found.push(delivery["event"].clone());
            }
        }
    }
    assert_eq!(found.len(), n, "notices of {caseref}: {found:#?}");
    found
}

/// The case's clock `name` as `reader` sees it.
async fn clock(reader: &AgencyClient, caseref: &str, name: &str) -> Value {
    let case = reader.get(&format!("/v1/cases/{caseref}")).await.unwrap();
    assert_eq!(case.status, 200, "{}", case.body);
    case.body["clocks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["clock"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no clock {name} in {}", case.body))
}

fn instant(value: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(value.as_str().expect("an RFC 3339 string"), &Rfc3339).unwrap()
}

/// The deadline notices of a case, as its accepted entries record them.
async fn recorded_notices(ledger: &Ledger, caseref: &str) -> Vec<String> {
    let case = ledger.case(caseref).await.unwrap().expect("the case");
    case.messages
        .iter()
        .filter(|m| m.type_ == "deadline.reminder.v1")
        .map(|m| m.id.to_string())
        .collect()
}

fn transfer(today: time::Date) -> Value {
    example_on(
        "case.transfer.v1",
        "hazardous-waste-dumping.json",
        "eco",
        today,
    )
}

#[tokio::test]
async fn a_transfer_filing_review_reminds_the_police_copying_the_procuratorate_once() {
    let world = quiet_watcher(World::new().await);
    // Tuesday 29 September 2026, the eve of the National Day holiday (1–7 October).
    let time = ManualClock::new(datetime!(2026-09-29 10:00 +8));
    let broker = world.start_with_clock(Arc::new(time.clone())).await;
    let ledger = world.ledger().await;
    let client = |agency: &str| world.client(&broker, agency);
    let (eco, police, procuratorate) = (client("eco"), client("police"), client("procuratorate"));

    let transfer = transfer(time_date(&time));
    let caseref = accepted(&eco, &transfer).await["caseref"]
        .as_str()
        .unwrap()
        .to_owned();
    // The police sign for it at once: its receipt clock stops, the review runs on.
    let receipt = answering(
        example_on(
            "receipt.v1",
            "minimal-receipt.json",
            "police",
            time_date(&time),
        ),
        &transfer,
    );
    accepted(&police, &receipt).await;
    assert_eq!(clock(&eco, &caseref, "receipt").await["status"], "answered");
    // Three days end on 2 October, a holiday: the first working day after the holiday
    // is Thursday 8 October, so the review is due at its 24:00.
    let review = clock(&police, &caseref, "filing_review").await;
    assert_eq!(
        instant(&review["due"]),
        datetime!(2026-10-09 00:00 +8),
        "{review}"
    );
    assert_eq!(review["owed_by"], json!(["police"]));
    assert_eq!(review["status"], "running");
    assert_eq!(
        scan(&broker).await,
        ScanReport::default(),
        "nothing is due yet"
    );

    // One day before: a reminder to the police, the procuratorate copied.
    time.set(datetime!(2026-10-08 00:30 +8));
    assert_eq!(scan(&broker).await.sent, 1);
    let reminder = &notices(&police, &caseref, 1).await[0];
    assert_eq!(reminder["data"]["stage"], "reminder", "{reminder}");
    assert_eq!(reminder["data"]["clock"], "filing_review");
    assert_eq!(reminder["data"]["remaining"], "P1D");
    assert_eq!(reminder["inreplyto"], transfer["id"]);
    assert_eq!(reminder["source"], "urn:liaison:agency:eco");
    assert_eq!(notices(&procuratorate, &caseref, 1).await[0], *reminder);

    // At the due instant: the overdue notice; then nothing more, however often scanned.
    time.set(datetime!(2026-10-09 00:00 +8));
    assert_eq!(scan(&broker).await.sent, 1);
    assert_eq!(scan(&broker).await, ScanReport::default());
    let overdue = &notices(&police, &caseref, 1).await[0];
    assert_eq!(overdue["data"]["stage"], "overdue", "{overdue}");
    assert_eq!(overdue["data"]["overdue_by"], "PT0S");
    assert_eq!(overdue["data"]["late_agency"], "police");
    assert_eq!(notices(&procuratorate, &caseref, 1).await[0], *overdue);

    // The overdue view lists it for the police, with how late it is.
    time.set(datetime!(2026-10-09 06:00 +8));
    let listed = police.get("/v1/cases?overdue=true").await.unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);
    let cases = listed.body["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 1, "{}", listed.body);
    assert_eq!(cases[0]["caseref"], caseref.as_str());
    assert_eq!(
        cases[0]["clocks"][0]["overdue_by"], "PT6H",
        "{}",
        listed.body
    );
    let due_later = eco
        .get("/v1/cases?due_before=2026-10-01T00:00:00%2B08:00")
        .await
        .unwrap();
    assert_eq!(due_later.body["cases"], json!([]), "{}", due_later.body);

    // A restart sends nothing again.
    broker.shutdown(Duration::from_secs(5)).await;
    let broker = world.start_with_clock(Arc::new(time.clone())).await;
    assert_eq!(scan(&broker).await, ScanReport::default());
    assert_eq!(recorded_notices(&ledger, &caseref).await.len(), 2);

    // The police answer, late: the clock stops and its escalation is never sent.
    let police = world.client(&broker, "police");
    let decision = answering(
        example_on(
            "case.filing-decision.v1",
            "filed.json",
            "police",
            time_date(&time),
        ),
        &transfer,
    );
    let body = accepted(&police, &decision).await;
    let entry = liaison_core::Entry::from_canonical(
        &ledger
            .entries(body["seq"].as_u64().unwrap(), 1)
            .await
            .unwrap()[0]
            .entry,
    )
    .unwrap();
    let stopped = &entry.detail["clocks"]["stopped"][0];
    assert_eq!(stopped["clock"], "filing_review", "{}", entry.detail);
    assert_eq!(stopped["reason"], "answered");
    assert_eq!(stopped["late"], true);
    time.set(datetime!(2026-10-20 00:00 +8));
    assert_eq!(scan(&broker).await, ScanReport::default());
    let review = clock(&police, &caseref, "filing_review").await;
    assert_eq!(review["status"], "answered", "{review}");
    assert_eq!(review["notices"], json!(["reminder-P1D", "overdue"]));
    assert_eq!(recorded_notices(&ledger, &caseref).await.len(), 2);

    // The clocks are derived from the ledger: a replay finds the same.
    let report = ledger.replay_cases(&mut |_| {}).await.unwrap();
    assert_eq!(report.differences, vec![], "{report:#?}");

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

fn time_date(time: &ManualClock) -> time::Date {
    use liaison_core::Clock;
    time.now().date()
}

#[tokio::test]
async fn a_decision_in_time_stops_the_clock_and_a_late_reconsideration_request_is_refused() {
    let mut world = quiet_watcher(World::new().await);
    world.config.admins = vec![liaison_tests::code("gov")];
    let time = ManualClock::new(datetime!(2026-03-02 09:00 +8));
    let broker = world.start_with_clock(Arc::new(time.clone())).await;
    let ledger = world.ledger().await;
    let client = |agency: &str| world.client(&broker, agency);
    let (eco, police) = (client("eco"), client("police"));

    let transfer = transfer(time_date(&time));
    let caseref = accepted(&eco, &transfer).await["caseref"]
        .as_str()
        .unwrap()
        .to_owned();
    // The police refuse to file on the next day, in time.
    time.advance(Span::days(1));
    let refusal = answering(
        example_on(
            "case.filing-decision.v1",
            "not-filed.json",
            "police",
            time_date(&time),
        ),
        &transfer,
    );
    accepted(&police, &refusal).await;
    let review = clock(&eco, &caseref, "filing_review").await;
    assert_eq!(review["status"], "answered", "{review}");
    time.advance(Span::days(30));
    assert_eq!(
        scan(&broker).await,
        ScanReport::default(),
        "a stopped clock says nothing"
    );
    assert_eq!(
        recorded_notices(&ledger, &caseref).await,
        Vec::<String>::new()
    );

    // The refusal opened eco's window for reconsideration: 3 days from Tue 3 March, so
    // until the end of Friday 6 March. A request a month later is refused and recorded.
    let window = clock(&eco, &caseref, "reconsideration_request").await;
    assert_eq!(window["kind"], "window");
    assert_eq!(window["owed_by"], json!(["eco"]));
    assert_eq!(
        instant(&window["due"]),
        datetime!(2026-03-07 00:00 +8),
        "{window}"
    );
    let late = answering(
        example_on(
            "case.reconsideration-request.v1",
            "hazardous-waste-reconsideration.json",
            "eco",
            time_date(&time),
        ),
        &refusal,
    );
    let refused = eco.submit(&late).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["code"], "window_closed", "{}", refused.body);
    assert!(refused.body["ledger_seq"].as_u64().is_some(), "recorded");
    let window = clock(&eco, &caseref, "reconsideration_request").await;
    assert_eq!(
        window["status"], "running",
        "a refused request does not stop it"
    );

    // In a second case, a request within the window is taken and closes it.
    let transfer = example_on(
        "case.transfer.v1",
        "illegal-logging.json",
        "eco",
        time_date(&time),
    );
    let caseref = accepted(&eco, &transfer).await["caseref"]
        .as_str()
        .unwrap()
        .to_owned();
    let refusal = answering(
        example_on(
            "case.filing-decision.v1",
            "not-filed-logging.json",
            "police",
            time_date(&time),
        ),
        &transfer,
    );
    accepted(&police, &refusal).await;
    time.advance(Span::days(2));
    let request = answering(
        example_on(
            "case.reconsideration-request.v1",
            "sand-mining-reconsideration.json",
            "eco",
            time_date(&time),
        ),
        &refusal,
    );
    accepted(&eco, &request).await;
    let window = clock(&eco, &caseref, "reconsideration_request").await;
    assert_eq!(window["status"], "answered", "{window}");

    // The county's report of March and April counts what happened: two transfers from eco, both
    // refused by the police in time, one reconsideration request in time and one refused
    // after its window.
    let report = client("gov")
        .get("/v1/reports?from=2026-03-01&to=2026-04-30")
        .await
        .unwrap();
    assert_eq!(report.status, 200, "{}", report.body);
    let row = |agency: &str, flow: &str| {
        report.body["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["agency"] == agency && r["flow"] == flow)
            .cloned()
            .unwrap_or_else(|| panic!("no row {agency} {flow}: {}", report.body))
    };
    let police_row = row("police", "transfer");
    assert_eq!(police_row["sent"], 2, "{police_row}");
    assert_eq!(
        police_row["received"], 3,
        "two transfers, one request: {police_row}"
    );
    assert_eq!(
        police_row["median_answer"], "12h",
        "a day and at once: {police_row}"
    );
    // Each decision answered its transfer's filing review and, unsigned till then, its
    // receipt clock: four answers, all in time.
    assert_eq!(police_row["answers_on_time"], 4, "{police_row}");
    assert_eq!(police_row["answers_late"], 0, "{police_row}");
    assert_eq!(police_row["transfers_not_filed"], 2, "{police_row}");
    assert_eq!(police_row["transfers_filed"], 0, "{police_row}");
    let eco_row = row("eco", "transfer");
    assert_eq!(eco_row["sent"], 3, "two transfers and a request: {eco_row}");
    assert_eq!(eco_row["cases_opened"], 2, "{eco_row}");
    assert_eq!(eco_row["answers_on_time"], 1, "{eco_row}");
    assert_eq!(eco_row["overdue_now"], 0, "{eco_row}");
    let rejections = report.body["rejections"].as_array().unwrap();
    assert!(
        rejections
            .iter()
            .any(|r| r["agency"] == "eco" && r["code"] == "window_closed" && r["count"] == 1),
        "{}",
        report.body
    );
    let refused = client("eco")
        .get("/v1/reports?from=2026-03-01&to=2026-04-30")
        .await
        .unwrap();
    assert_eq!(refused.status, 403, "reports are for administrators");

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn an_urgent_recommendation_unanswered_is_escalated_to_the_county_government() {
    let world = quiet_watcher(World::new().await);
    // Monday 2 March 2026.
    let time = ManualClock::new(datetime!(2026-03-02 10:00 +8));
    let broker = world.start_with_clock(Arc::new(time.clone())).await;
    let client = |agency: &str| world.client(&broker, agency);
    let (procuratorate, forestry, gov) =
        (client("procuratorate"), client("forestry"), client("gov"));

    // Harm is spreading: 15 days, whatever earlier date the recommendation states; the
    // objection window is the date it states.
    let mut recommendation = example_on(
        "procuratorial.recommendation.v1",
        "forest-land-normal.json",
        "procuratorate",
        time_date(&time),
    );
    recommendation["data"]["urgent"] = json!(true);
    recommendation["data"]["reply_due"] = json!("2026-03-10");
    recommendation["data"]["objection_due"] = json!("2026-03-06");
    recommendation["recipients"] = json!(["forestry"]);
    let body = accepted(&procuratorate, &recommendation).await;
    assert_eq!(
        body["recipients"],
        json!([{"agency": "forestry", "role": "to"}]),
        "a normal-impact recommendation is not copied to the county government"
    );
    let caseref = body["caseref"].as_str().unwrap().to_owned();
    let receipt = answering(
        example_on(
            "receipt.v1",
            "minimal-receipt.json",
            "forestry",
            time_date(&time),
        ),
        &recommendation,
    );
    accepted(&forestry, &receipt).await;
    let reply = clock(&forestry, &caseref, "recommendation_reply").await;
    // Last day Tue 17 March.
    assert_eq!(
        instant(&reply["due"]),
        datetime!(2026-03-18 00:00 +8),
        "{reply}"
    );

    // An objection after Friday 6 March is refused.
    time.set(datetime!(2026-03-09 09:00 +8));
    let objection = answering(
        example_on(
            "procuratorial.objection.v1",
            "permit-already-granted.json",
            "forestry",
            time_date(&time),
        ),
        &recommendation,
    );
    let refused = forestry.submit(&objection).await.unwrap();
    assert_eq!(refused.body["code"], "window_closed", "{}", refused.body);

    // Reminders a week and a day before go to forestry alone.
    time.set(datetime!(2026-03-17 08:00 +8));
    assert_eq!(scan(&broker).await.sent, 2);
    let reminders = notices(&forestry, &caseref, 2).await;
    let stages: Vec<&Value> = reminders.iter().map(|n| &n["data"]["stage"]).collect();
    assert_eq!(stages, [&json!("reminder"), &json!("reminder")]);

    // Overdue, and 15 days later escalated: the county government is copied on both.
    time.set(datetime!(2026-04-03 00:00 +8));
    assert_eq!(scan(&broker).await.sent, 2);
    let to_forestry = notices(&forestry, &caseref, 2).await;
    let to_gov = notices(&gov, &caseref, 2).await;
    assert_eq!(to_gov, to_forestry);
    let stages: Vec<&Value> = to_gov.iter().map(|n| &n["data"]["stage"]).collect();
    assert_eq!(stages, [&json!("overdue"), &json!("escalation")]);
    assert_eq!(to_gov[1]["data"]["overdue_by"], "P15D");
    let reply = clock(&gov, &caseref, "recommendation_reply").await;
    assert_eq!(
        reply["notices"],
        json!(["reminder-P7D", "reminder-P1D", "overdue", "escalation-P15D"])
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn two_instances_on_one_database_send_each_notice_once() {
    let world = quiet_watcher(World::new().await);
    let time = ManualClock::new(datetime!(2026-06-01 10:00 +8));
    let first = world.start_with_clock(Arc::new(time.clone())).await;
    let second = world.start_with_clock(Arc::new(time.clone())).await;
    let ledger = world.ledger().await;
    let eco = world.client(&first, "eco");
    let police = world.client(&second, "police");

    let transfer = transfer(time_date(&time));
    let caseref = accepted(&eco, &transfer).await["caseref"]
        .as_str()
        .unwrap()
        .to_owned();
    // Past the review's due instant (Thursday 4 June, 24:00): its reminder and overdue
    // notice, and the overdue notice of the receipt the police never signed (due at the
    // end of Tuesday 2 June).
    time.set(datetime!(2026-06-05 09:00 +8));
    let (a, b) = tokio::join!(scan(&first), scan(&second));
    assert_eq!(a.sent + b.sent, 3, "{a:?} {b:?}");
    assert_eq!(a.refused + b.refused, 0, "{a:?} {b:?}");
    let (a, b) = tokio::join!(scan(&first), scan(&second));
    assert_eq!((a, b), (ScanReport::default(), ScanReport::default()));
    assert_eq!(recorded_notices(&ledger, &caseref).await.len(), 3);
    let received = notices(&police, &caseref, 3).await;
    let mut kinds: Vec<(String, String)> = received
        .iter()
        .map(|n| {
            let data = &n["data"];
            (
                data["clock"].as_str().unwrap().into(),
                data["stage"].as_str().unwrap().into(),
            )
        })
        .collect();
    kinds.sort();
    let expected = [
        ("filing_review", "overdue"),
        ("filing_review", "reminder"),
        ("receipt", "overdue"),
    ];
    assert_eq!(kinds, expected.map(|(c, s)| (c.to_owned(), s.to_owned())));

    first.shutdown(Duration::from_secs(5)).await;
    second.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
