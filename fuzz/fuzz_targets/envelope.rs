//! libFuzzer target: every pre-ledger check of the broker (parse with limits, envelope and
//! payload schemas, typed envelope, policy) on arbitrary bytes from an arbitrary sender.
//! The first input byte picks the sender among the registry's agencies.
#![no_main]

use std::path::Path;
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use liaison_schema::fuzzing::FuzzTarget;

static TARGET: LazyLock<FuzzTarget> = LazyLock::new(|| {
    FuzzTarget::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .expect("catalogue, registry and policy of the repository")
});

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let senders = TARGET.senders();
    let sender = &senders[usize::from(pick) % senders.len()];
    TARGET.check(sender, body);
});
