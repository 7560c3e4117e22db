//! The integrators' contract: the registry as `GET /v1/agencies` lists it, route previews
//! that record nothing, refusals that say what to fix, every status in the OpenAPI
//! document, and the runnable examples of `examples/` (curl, Python, Java) run as child
//! processes against a real broker, checked by their output and by the ledger.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use liaison_client::AgencyClient;
use liaison_core::{Entry, EntryKind};
use liaison_ledger::TraceKey;
use liaison_server::Broker;
use liaison_tests::{World, answering, code, example, repo_root};
use serde_json::{Value, json};

use crate::intake::AgencyUsers;

fn base(broker: &Broker) -> String {
    format!("https://localhost:{}", broker.https_addr.port())
}

/// Every entry of the world's ledger so far.
async fn all_entries(world: &World) -> Vec<liaison_ledger::StoredEntry> {
    world.ledger().await.entries(1, 1_000_000).await.unwrap()
}

async fn trace(world: &World, key: &str) -> Vec<Entry> {
    world
        .ledger()
        .await
        .trace(&TraceKey::parse(key))
        .await
        .unwrap()
}

fn id_of(event: &Value) -> &str {
    event["id"].as_str().expect("an event id")
}

#[tokio::test]
async fn the_registry_a_preview_and_refusals_that_say_what_to_fix() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let gov = world.client(&broker, "gov");

    // The registry with what each agency exchanges, as the directory computes it.
    let listed = eco.get("/v1/agencies").await.unwrap();
    assert_eq!(listed.status, 200, "{}", listed.body);
    let registry = world.config.load_registry().unwrap();
    let policy = world.config.load_policy(&registry).unwrap();
    let catalogue = world.config.load_catalogue().unwrap();
    let expected = liaison_server::http::directory::directory(&registry, &policy, &catalogue);
    assert_eq!(
        listed.body["agencies"],
        serde_json::to_value(&expected).unwrap()
    );
    let fic = listed.body["agencies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["code"] == "fic")
        .expect("fic is listed");
    assert_eq!(fic["name_zh"], "工商业联合会");
    assert_eq!(fic["name_en"], "Federation of Industry and Commerce");

    // A preview answers the route and records nothing.
    let before = all_entries(&world).await.len();
    let lead = example("pil.lead.v1", "river-pollution-full.json", "eco");
    let preview = eco.preview(&lead).await.unwrap();
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert_eq!(
        preview.body,
        json!({
            "type": "pil.lead.v1",
            "recipients": [{"agency": "procuratorate", "role": "to", "rule": "pil-lead-to-procuratorate"}],
            "recorded": false,
        })
    );
    // A refusal is the submission's problem, without a ledger entry.
    let receipt = answering(
        example("receipt.v1", "*", "eco"),
        &json!({"id": uuid::Uuid::now_v7().to_string()}),
    );
    let refused = eco.preview(&receipt).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["code"], "unknown_original");
    assert!(refused.body.get("ledger_seq").is_none(), "{}", refused.body);
    assert_eq!(
        all_entries(&world).await.len(),
        before,
        "a preview records nothing"
    );
    assert!(trace(&world, id_of(&lead)).await.is_empty());

    // The same lead submitted goes where the preview said.
    let accepted = eco.submit(&lead).await.unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    assert_eq!(
        accepted.body["recipients"],
        json!([{"agency": "procuratorate", "role": "to"}])
    );

    // A sender that may not send a type learns that before the payload's faults.
    let mut transfer = example("case.transfer.v1", "*", "gov");
    transfer["data"] = json!({"nonsense": true});
    for answer in [
        gov.preview(&transfer).await.unwrap(),
        gov.submit(&transfer).await.unwrap(),
    ] {
        assert_eq!(answer.status, 403, "{}", answer.body);
        assert_eq!(answer.body["code"], "type_not_allowed");
        assert!(answer.body.get("errors").is_none(), "{}", answer.body);
    }

    // A wrong check character names the format, the position and the character expected;
    // an enum lists every allowed value.
    let mut bad = example("pil.lead.v1", "river-pollution-full.json", "eco");
    let good_id = bad["data"]["suspected_party"]["id_number"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = if good_id.ends_with('0') { '1' } else { '0' };
    bad["data"]["suspected_party"]["id_number"] = json!(format!("{}{wrong}", &good_id[..17]));
    bad["data"]["domain"] = json!("rivers");
    let answer = eco.submit(&bad).await.unwrap();
    assert_eq!(answer.status, 422, "{}", answer.body);
    assert_eq!(answer.body["code"], "payload_invalid");
    let errors = answer.body["errors"].as_array().unwrap();
    let message = |pointer: &str| {
        errors
            .iter()
            .find(|e| e["pointer"] == pointer)
            .and_then(|e| e["message"].as_str())
            .unwrap_or_else(|| panic!("no error at {pointer}: {errors:?}"))
            .to_owned()
    };
    let check = message("/data/suspected_party/id_number");
    let last = good_id.chars().last().unwrap();
    assert!(
        check.contains("cn-uscc")
            && check.contains("position 18")
            && check.contains(&format!("'{last}'")),
        "{check}"
    );
    let domain = message("/data/domain");
    for value in [
        "ecology_resources",
        "labour_protection",
        "fake_agricultural_inputs",
    ] {
        assert!(domain.contains(value), "{domain}");
    }

    // recipients_not_allowed says who is allowed.
    let mut named = example("pil.lead.v1", "sand-dump-minimal.json", "eco");
    named["recipients"] = json!(["gov"]);
    let answer = eco.submit(&named).await.unwrap();
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(answer.body["code"], "recipients_not_allowed");
    let detail = answer.body["detail"].as_str().unwrap();
    assert!(detail.ends_with("it may go to: procuratorate"), "{detail}");

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

/// A request of the sweep below: method, documented path, requested path, and the
/// content type and body it sends.
type Probe<'a> = (&'a str, &'a str, String, Option<(&'a str, Vec<u8>)>);

/// Whatever the gateway answers to a request of a documented operation, that status is
/// among the operation's documented responses, and a refusal is a problem document.
#[tokio::test]
async fn every_status_the_gateway_answers_is_documented() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let document = eco.get("/openapi.json").await.unwrap().body;
    let tls = liaison_server::tls::agency_client_config(&world.layout(), &code("eco")).unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let lead = example("pil.lead.v1", "sand-dump-minimal.json", "eco");
    let event = serde_json::to_vec(&lead).unwrap();
    let stranger = uuid::Uuid::now_v7();
    let requests: Vec<Probe> = vec![
        ("GET", "/v1/agencies", "/v1/agencies".into(), None),
        ("GET", "/v1/inbox", "/v1/inbox?wait=soon".into(), None),
        ("GET", "/v1/inbox", "/v1/inbox?max=-1".into(), None),
        (
            "POST",
            "/v1/inbox/{delivery}/ack",
            "/v1/inbox/7/ack".into(),
            None,
        ),
        (
            "POST",
            "/v1/inbox/{delivery}/ack",
            "/v1/inbox/seven/ack".into(),
            None,
        ),
        (
            "GET",
            "/v1/checkpoints/consistency",
            "/v1/checkpoints/consistency?from=one".into(),
            None,
        ),
        ("GET", "/v1/cases", "/v1/cases?overdue=maybe".into(), None),
        (
            "GET",
            "/v1/cases",
            "/v1/cases?opened_after=yesterday".into(),
            None,
        ),
        (
            "GET",
            "/v1/cases/{caseref}",
            "/v1/cases/ECO-2026-999999".into(),
            None,
        ),
        (
            "GET",
            "/v1/messages/{id}",
            format!("/v1/messages/{stranger}"),
            None,
        ),
        ("GET", "/v1/messages/{id}", "/v1/messages/%FF".into(), None),
        (
            "GET",
            "/v1/messages/{id}/proof",
            format!("/v1/messages/{stranger}/proof"),
            None,
        ),
        (
            "GET",
            "/v1/trace/{key}",
            format!("/v1/trace/{stranger}"),
            None,
        ),
        (
            "GET",
            "/v1/reports",
            "/v1/reports?from=2026-13-01&to=2026-01-01".into(),
            None,
        ),
        (
            "GET",
            "/v1/schemas/{type}",
            "/v1/schemas/no.such.v1".into(),
            None,
        ),
        (
            "POST",
            "/v1/routes/preview",
            "/v1/routes/preview".into(),
            Some(("text/plain", event.clone())),
        ),
        (
            "POST",
            "/v1/routes/preview",
            "/v1/routes/preview".into(),
            Some(("application/json", b"{".to_vec())),
        ),
        (
            "POST",
            "/v1/routes/preview",
            "/v1/routes/preview".into(),
            Some(("application/json", event.clone())),
        ),
        (
            "POST",
            "/v1/messages",
            "/v1/messages".into(),
            Some(("application/json", b"[]".to_vec())),
        ),
        (
            "POST",
            "/v1/messages",
            "/v1/messages".into(),
            Some(("application/json", event.clone())),
        ),
        (
            "POST",
            "/v1/messages",
            "/v1/messages".into(),
            Some(("application/json", event)),
        ),
    ];
    let mut statuses = std::collections::BTreeSet::new();
    for (method, documented, path, body) in requests {
        let url = format!("{}{path}", base(&broker));
        let mut request = http.request(method.parse().unwrap(), &url);
        if let Some((content_type, bytes)) = body {
            request = request.header("content-type", content_type).body(bytes);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let text = response.text().await.unwrap();
        let responses = &document["paths"][documented][method.to_ascii_lowercase()]["responses"];
        assert!(
            responses.get(status.to_string()).is_some(),
            "{method} {path} answered {status}, which {documented} does not document: {text}"
        );
        if status >= 400 {
            assert_eq!(
                content_type, "application/problem+json",
                "{method} {path}: {text}"
            );
            let problem: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(problem["status"], status, "{method} {path}: {text}");
        }
        statuses.insert(status);
    }
    // The sweep reached the statuses it was written for.
    for status in [200, 202, 400, 403, 404, 415, 422] {
        assert!(
            statuses.contains(&status),
            "{status} never answered: {statuses:?}"
        );
    }
    let problem = eco.get("/v1/inbox?wait=soon").await.unwrap();
    assert_eq!(
        problem.body["code"], "invalid_parameter",
        "{}",
        problem.body
    );
    // A method a path does not serve is no operation of the document: 405 with `Allow`,
    // as docs/integration.md says.
    let wrong = http
        .get(format!("{}/v1/routes/preview", base(&broker)))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 405);
    assert_eq!(
        wrong.headers().get("allow").and_then(|v| v.to_str().ok()),
        Some("POST")
    );
    let unknown = eco.get("/v1/nowhere").await.unwrap();
    assert_eq!(unknown.status, 404);
    assert_eq!(unknown.body["code"], "not_found");

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

/// A broker with eco's inbox holding one receipt (the procuratorate's answer to an earlier
/// lead of eco's), a fresh lead of eco's to post written to a file, and eco's credentials.
struct Scenario {
    world: World,
    broker: Broker,
    dir: tempfile::TempDir,
    /// The receipt waiting for eco.
    receipt: Value,
    /// The lead the example posts.
    lead: Value,
}

impl Scenario {
    async fn start() -> Scenario {
        let world = World::new().await;
        let broker = world.start().await;
        let eco = world.client(&broker, "eco");
        let procuratorate = world.client(&broker, "procuratorate");
        let earlier = example("pil.lead.v1", "sand-dump-minimal.json", "eco");
        assert_eq!(eco.submit(&earlier).await.unwrap().status, 202);
        let receipt = answering(example("receipt.v1", "*", "procuratorate"), &earlier);
        let answer = procuratorate.submit(&receipt).await.unwrap();
        assert_eq!(answer.status, 202, "{}", answer.body);
        let dir = tempfile::tempdir().unwrap();
        let lead = example("pil.lead.v1", "river-pollution-full.json", "eco");
        std::fs::write(
            dir.path().join("lead.json"),
            serde_json::to_vec(&lead).unwrap(),
        )
        .unwrap();
        Scenario {
            world,
            broker,
            dir,
            receipt,
            lead,
        }
    }

    fn eco(&self) -> AgencyClient {
        self.world.client(&self.broker, "eco")
    }

    /// What every example is given: the gateway, the county CA, the event to post.
    fn environment(&self) -> Vec<(&'static str, String)> {
        let layout = self.world.layout();
        vec![
            ("LIAISON_URL", base(&self.broker)),
            ("LIAISON_CA", path(&layout.ca_cert())),
            ("LIAISON_CERT", path(&layout.agency_cert(&code("eco")))),
            ("LIAISON_KEY", path(&layout.agency_key(&code("eco")))),
            ("LIAISON_EVENT", path(&self.dir.path().join("lead.json"))),
        ]
    }

    /// The lines the round trip prints before it reads its inbox, checked against the
    /// ledger: the lead is accepted as the example says, and the preview recorded nothing.
    async fn check_posting(&self, output: &str) {
        let id = id_of(&self.lead);
        assert!(output.contains("agencies: 19\n"), "{output}");
        assert!(output.contains("preview: procuratorate\n"), "{output}");
        let entries = trace(&self.world, id).await;
        let accepted = entries
            .iter()
            .find(|e| e.kind == EntryKind::MessageAccepted)
            .expect("the example's lead is recorded");
        assert_eq!(accepted.agency, Some(code("eco")));
        assert!(
            output.contains(&format!("accepted: {id} seq {}\n", accepted.seq)),
            "{output}"
        );
        let rejected = all_entries(&self.world)
            .await
            .iter()
            .filter(|e| Entry::from_canonical(&e.entry).unwrap().kind == EntryKind::MessageRejected)
            .count();
        assert_eq!(
            rejected, 0,
            "nothing was refused, the preview recorded nothing"
        );
        assert!(output.contains("proof: leaf "), "{output}");
    }

    /// After an HTTPS round trip: the receipt's delivery to eco was acknowledged once, and
    /// the example said so, then saw its repeated ack answered `already_acknowledged`.
    /// Returns the delivery number.
    async fn check_acknowledged(&self, output: &str) -> i64 {
        let entries = trace(&self.world, id_of(&self.receipt)).await;
        let acks: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.kind == EntryKind::DeliveryAcknowledged)
            .collect();
        assert_eq!(acks.len(), 1, "{entries:?}");
        assert_eq!(acks[0].agency, Some(code("eco")));
        let delivery = acks[0].detail["delivery"]
            .as_i64()
            .unwrap_or_else(|| panic!("the ack names its delivery: {}", acks[0].detail));
        assert!(
            output.contains(&format!("acknowledged: {delivery}\n")),
            "{output}"
        );
        assert!(
            output.contains(&format!(
                "acknowledged again: {delivery} already_acknowledged\n"
            )),
            "{output}"
        );
        delivery
    }

    async fn finish(self) {
        self.broker.shutdown(Duration::from_secs(5)).await;
        self.world.cleanup().await;
    }
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

fn example_file(relative: &str) -> PathBuf {
    repo_root().join("examples").join(relative)
}

/// Fails the test, naming what to install, when `program` cannot run here: a missing
/// runtime is a broken machine, never a reason to skip.
fn require(program: &str, args: &[&str], install: &str) {
    let ran = std::process::Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match ran {
        Ok(status) if status.success() => {}
        Ok(status) => panic!("`{program} {}` exited {status}: {install}", args.join(" ")),
        Err(e) => panic!("{program} is not installed ({e}): {install}"),
    }
}

/// Runs an example to its end (bounded) and returns what it printed; fails with its output
/// when it exits non-zero.
async fn run(program: &str, args: &[String], environment: &[(&str, String)]) -> String {
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .envs(environment.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = command
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"));
    let output = tokio::time::timeout(Duration::from_secs(180), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("{program} {args:?} did not finish in 180 s"))
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{program} {args:?} exited {}:\n{stdout}\n{stderr}",
        output.status
    );
    stdout
}

#[tokio::test]
async fn the_curl_example_runs_against_a_real_broker() {
    require(
        "curl",
        &["--version"],
        "install curl (apt-get install curl)",
    );
    require("sha256sum", &["--version"], "install coreutils");
    let scenario = Scenario::start().await;
    let script = path(&example_file("curl/agency.sh"));
    let output = run("bash", &[script], &scenario.environment()).await;
    scenario.check_posting(&output).await;
    scenario.check_acknowledged(&output).await;
    assert!(output.contains("pulled: 1 (receipt.v1)\n"), "{output}");
    scenario.finish().await;
}

#[tokio::test]
async fn the_python_example_runs_against_a_real_broker() {
    require(
        "python3",
        &["-c", "import requests, pika"],
        "the Python example needs python3 with requests and pika \
         (pip install --user requests pika; scripts/test installs them)",
    );
    let scenario = Scenario::start().await;
    // eco's RabbitMQ login, made as `liaison amqp definitions --passwords FILE` makes it.
    let users = AgencyUsers::import(&scenario.world);
    let user = users.user("eco");
    let amqp_url = format!(
        "amqp://{user}:{}@127.0.0.1:5672/{}",
        users.passwords[&user], scenario.world.vhost
    );
    let mut environment = scenario.environment();
    environment.extend([
        ("LIAISON_AMQP_URL", amqp_url),
        ("LIAISON_AGENCY", "eco".to_owned()),
        ("LIAISON_EXPECT", "1".to_owned()),
    ]);
    let script = path(&example_file("python/agency.py"));
    let output = run("python3", &[script], &environment).await;
    scenario.check_posting(&output).await;
    let seq = trace(&scenario.world, id_of(&scenario.receipt))
        .await
        .iter()
        .find(|e| e.kind == EntryKind::MessageAccepted)
        .expect("the receipt is recorded")
        .seq;
    assert!(
        output.contains(&format!(
            "consumed: {} receipt.v1 seq {seq} case ",
            id_of(&scenario.receipt)
        )),
        "{output}"
    );
    // Acknowledged to RabbitMQ: nothing is left in eco's queue, ready or unacknowledged.
    let queues = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-p",
            &scenario.world.vhost,
            "--quiet",
            "name",
            "messages",
        ])
        .output()
        .expect("rabbitmqctl");
    let listed = String::from_utf8_lossy(&queues.stdout);
    assert!(
        listed
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["liaison.agency.eco", "0"]),
        "{listed}"
    );
    drop(users);
    scenario.finish().await;
}

#[tokio::test]
async fn the_java_example_runs_against_a_real_broker() {
    require(
        "java",
        &["-version"],
        "the Java example needs a JDK 17 or later (apt-get install openjdk-17-jdk-headless)",
    );
    require(
        "openssl",
        &["version"],
        "the Java example's key store is made with openssl (apt-get install openssl)",
    );
    let scenario = Scenario::start().await;
    let layout = scenario.world.layout();
    // The agency's PEM key and certificate as a PKCS#12 key store, as an agency would make
    // it for a Java system.
    let p12 = scenario.dir.path().join("eco.p12");
    let password = "integration-example";
    let made = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-name", "eco", "-inkey"])
        .arg(layout.agency_key(&code("eco")))
        .arg("-in")
        .arg(layout.agency_cert(&code("eco")))
        .arg("-out")
        .arg(&p12)
        .args(["-passout", &format!("pass:{password}")])
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut environment = scenario.environment();
    environment.retain(|(k, _)| !["LIAISON_CERT", "LIAISON_KEY"].contains(k));
    environment.extend([
        ("LIAISON_P12", path(&p12)),
        ("LIAISON_P12_PASSWORD", password.to_owned()),
        ("LIAISON_LEDGER_KEY", path(&layout.ledger_public_key())),
    ]);
    let source = path(&example_file("java/Agency.java"));
    let output = run("java", &[source], &environment).await;
    scenario.check_posting(&output).await;
    assert!(output.contains("checkpoint: signature by "), "{output}");
    let delivery = scenario.check_acknowledged(&output).await;
    assert!(
        output.contains(&format!(
            "pulled: {delivery} receipt.v1 {}\n",
            id_of(&scenario.receipt)
        )),
        "{output}"
    );
    // The example's lead is visible to its sender with the same route the preview gave.
    let message = scenario
        .eco()
        .get(&format!("/v1/messages/{}", id_of(&scenario.lead)))
        .await
        .unwrap();
    assert_eq!(message.status, 200, "{}", message.body);
    scenario.finish().await;
}
