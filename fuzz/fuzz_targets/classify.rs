//! Whatever comes back to the bounce address: the classifier and the VERP
//! reader must answer, never panic, on any bytes.
#![no_main]

use herald::bounces::{classify, verp};
use herald::subscribe::Secret;
use herald::EmailAddress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = classify(data);
    for finding in &report.findings {
        if let Some(status) = &finding.status {
            let _ = herald::bounces::classify::failure_kind(status);
        }
    }
    let secret = Secret::new(b"a fuzzing secret of thirty-two bytes".to_vec());
    let bounce = EmailAddress::parse("bounces@bounce.test").expect("a constant address");
    let _ = verp::tags_in(&secret, &bounce, &report.addressed);
    let text = String::from_utf8_lossy(data);
    let _ = verp::recipient(&secret, &bounce, &text);
    let _ = verp::tags_in(&secret, &bounce, &text);
});
