//! The stable-toolchain twin of `fuzz/fuzz_targets/envelope.rs`: runs
//! [`liaison_schema::fuzzing::FuzzTarget::check`] on mutations of every catalogue example
//! for a fixed time, and stops at the first panic (the input is written to
//! `target/fuzz-crash-<n>.bin`).
//!
//! ```sh
//! cargo run --release -p liaison-schema --example fuzz_envelope -- --seconds 600 [--seed N]
//! ```
//!
//! Mutations are both blind (bit flips, byte insertions and deletions, splices) and
//! structure-aware (a JSON value replaced by another kind, deep nesting, long and
//! unusual strings, duplicated members), so that inputs reach the schemas and the policy
//! and not only the JSON parser.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use liaison_schema::fuzzing::{FuzzTarget, Verdict};
use serde_json::Value;

fn main() {
    let mut seconds = 60u64;
    let mut seed = 0x5eed_1a15_0a11_u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--seconds", Some(v)) => seconds = v,
            ("--seed", Some(v)) => seed = v,
            _ => {
                eprintln!("usage: fuzz_envelope [--seconds N] [--seed N]");
                std::process::exit(2);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = FuzzTarget::load(&root).unwrap_or_else(|e| {
        eprintln!("cannot load the catalogue and policy: {e}");
        std::process::exit(2)
    });
    let seeds = seeds(&root.join("schemas"));
    assert!(!seeds.is_empty(), "no catalogue examples under schemas/");
    let mut rng = Rng(seed | 1);
    let started = Instant::now();
    let limit = Duration::from_secs(seconds);
    let mut runs = 0u64;
    let mut verdicts: BTreeMap<String, u64> = BTreeMap::new();
    while started.elapsed() < limit {
        let base = &seeds[rng.below(seeds.len())];
        let input = mutate(base, &seeds, &mut rng);
        let sender = &target.senders()[rng.below(target.senders().len())];
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            target.check(sender, &input)
        }));
        match outcome {
            Ok(verdict) => {
                let key = match verdict {
                    Verdict::Routable => "routable".to_owned(),
                    Verdict::Refused(code) => code.as_str().to_owned(),
                };
                *verdicts.entry(key).or_default() += 1;
            }
            Err(_) => {
                let path = root.join(format!("target/fuzz-crash-{runs}.bin"));
                let _ = std::fs::write(&path, &input);
                eprintln!(
                    "CRASH after {runs} runs; input written to {}",
                    path.display()
                );
                std::process::exit(1);
            }
        }
        runs += 1;
    }
    println!(
        "fuzz_envelope: {runs} inputs in {:.0} s (seed {seed}), {} seeds, no crash",
        started.elapsed().as_secs_f64(),
        seeds.len()
    );
    for (verdict, count) in verdicts {
        println!("  {verdict:<24} {count}");
    }
}

/// Every example file of the catalogue (valid and invalid), as bytes.
fn seeds(schemas: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = Vec::new();
    let mut stack = vec![schemas.to_owned()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json")
                && path
                    .parent()
                    .and_then(|p| p.file_name())
                    .is_some_and(|n| n == "valid" || n == "invalid")
            {
                files.push(path);
            }
        }
    }
    files.sort();
    files
        .iter()
        .filter_map(|path| std::fs::read(path).ok())
        .collect()
}

fn mutate(base: &[u8], seeds: &[Vec<u8>], rng: &mut Rng) -> Vec<u8> {
    let rounds = 1 + rng.below(4);
    let mut input = base.to_vec();
    for _ in 0..rounds {
        input = match rng.below(10) {
            0 => flip_bit(input, rng),
            1 => insert_bytes(input, rng),
            2 => delete_range(input, rng),
            3 => splice(input, &seeds[rng.below(seeds.len())], rng),
            _ => mutate_json(&input, rng).unwrap_or(input),
        };
    }
    input
}

fn flip_bit(mut input: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    if !input.is_empty() {
        let i = rng.below(input.len());
        input[i] ^= 1 << rng.below(8);
    }
    input
}

const TOKENS: [&[u8]; 14] = [
    b"{", b"}", b"[", b"]", b"\"", b",", b":", b"\\u0000", b"\\ud800", b"\xff", b"\xc3", b"null",
    b"1e999", b"-0",
];

fn insert_bytes(mut input: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    let at = rng.below(input.len() + 1);
    let token = TOKENS[rng.below(TOKENS.len())];
    let most = if rng.below(8) == 0 { 200 } else { 3 };
    let times = 1 + rng.below(most);
    let insert: Vec<u8> = token
        .iter()
        .copied()
        .cycle()
        .take(token.len() * times)
        .collect();
    input.splice(at..at, insert);
    input
}

fn delete_range(mut input: Vec<u8>, rng: &mut Rng) -> Vec<u8> {
    if !input.is_empty() {
        let start = rng.below(input.len());
        let end = (start + 1 + rng.below(16)).min(input.len());
        input.drain(start..end);
    }
    input
}

fn splice(input: Vec<u8>, other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let cut = rng.below(input.len() + 1);
    let from = rng.below(other.len() + 1);
    let mut out = input[..cut].to_vec();
    out.extend_from_slice(&other[from..]);
    out
}

/// Replaces one value anywhere in the JSON document by a value of another shape.
fn mutate_json(input: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
    let mut value: Value = serde_json::from_slice(input).ok()?;
    let mut paths = Vec::new();
    collect_paths(&value, String::new(), &mut paths);
    let pointer = paths.get(rng.below(paths.len().max(1)))?.clone();
    let replacement = random_value(rng, 0);
    if let Some(slot) = value.pointer_mut(&pointer) {
        match (rng.below(4), slot.as_object_mut()) {
            (0, Some(object)) => {
                // A new member next to the existing ones (an unknown attribute).
                object.insert(random_string(rng), replacement);
            }
            _ => *slot = replacement,
        }
    }
    let mut bytes = serde_json::to_vec(&value).ok()?;
    if rng.below(10) == 0 {
        // A duplicated member, which serde would otherwise never produce.
        if let Some(pos) = bytes.iter().position(|b| *b == b'{') {
            bytes.splice(pos + 1..pos + 1, b"\"id\":\"x\",".iter().copied());
        }
    }
    Some(bytes)
}

fn collect_paths(value: &Value, here: String, out: &mut Vec<String>) {
    out.push(here.clone());
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                let escaped = key.replace('~', "~0").replace('/', "~1");
                collect_paths(child, format!("{here}/{escaped}"), out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                collect_paths(child, format!("{here}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn random_value(rng: &mut Rng, depth: usize) -> Value {
    match rng.below(if depth > 40 { 5 } else { 8 }) {
        0 => Value::Null,
        1 => Value::Bool(rng.below(2) == 0),
        2 => serde_json::json!(rng.next() as i64),
        3 => serde_json::json!((rng.next() as f64) / 7.0 - 1e18),
        4 => Value::String(random_string(rng)),
        5 => Value::Array(
            (0..rng.below(4))
                .map(|_| random_value(rng, depth + 1))
                .collect(),
        ),
        6 => Value::Object(
            (0..rng.below(4))
                .map(|_| (random_string(rng), random_value(rng, depth + 1)))
                .collect(),
        ),
        // Deep nesting, to meet the depth limit.
        _ => (0..rng.below(60)).fold(Value::Null, |inner, _| Value::Array(vec![inner])),
    }
}

const WORDS: [&str; 16] = [
    "urn:liaison:agency:eco",
    "urn:liaison:agency:procuratorate",
    "pil.lead.v1",
    "case.transfer.v1",
    "1.0",
    "2026-01-01T00:00:00Z",
    "01890a5d-ac96-774b-bcce-b302099a8057",
    "'; DROP TABLE ledger_entries; --",
    "<script>alert(1)</script>",
    "山丹县",
    "\u{202e}\u{0000}\u{feff}",
    "SD-2026-001",
    "application/json",
    "",
    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    "110101199003074477",
];

fn random_string(rng: &mut Rng) -> String {
    let word = WORDS[rng.below(WORDS.len())];
    match rng.below(4) {
        0 => word.repeat(1 + rng.below(300)),
        1 => (0..rng.below(20))
            .map(|_| char::from_u32(rng.below(0x11000) as u32).unwrap_or('\u{fffd}'))
            .collect(),
        _ => word.to_owned(),
    }
}

/// xorshift64*: enough randomness for mutation, and reproducible from `--seed`.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}
