//! Validation throughput on realistic messages: the first valid example of every type,
//! from bytes (parse with the depth limit, then envelope and payload schemas), which is the
//! work the pipeline does per submission. Criterion runs on one thread, so the reported
//! `thrpt` in elements per second is messages per second per core.
//!
//! `cargo bench -p liaison-schema --bench validate`

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use liaison_schema::{Catalogue, Expectation, ParseLimits, load_examples, parse};

fn validation(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas");
    let catalogue = Catalogue::load(&dir).expect("schemas/ loads");
    let examples = load_examples(&dir).expect("examples load");
    let limits = ParseLimits::default();

    let mut group = c.benchmark_group("validate");
    group.throughput(Throughput::Elements(1));
    for message_type in catalogue.types() {
        // The richest valid example of the type: the most fields to check.
        let Some(example) = examples
            .iter()
            .filter(|e| e.expectation == Expectation::Valid)
            .filter(|e| e.folder_type.as_deref() == Some(message_type.name.as_str()))
            .max_by_key(|e| e.event.to_string().len())
        else {
            continue;
        };
        let bytes = serde_json::to_vec(&example.event).expect("serialises");
        let event = parse(&bytes, &limits).expect("parses");
        catalogue
            .validate(&event)
            .expect("a valid example validates");
        group.bench_function(format!("{}/{}B", message_type.name, bytes.len()), |b| {
            b.iter(|| {
                let event = parse(black_box(&bytes), &limits).expect("parses");
                catalogue.validate(&event).expect("validates");
            });
        });
    }
    group.finish();
}

criterion_group!(benches, validation);
criterion_main!(benches);
