//! The response parser: any text as a model's answer (whole files, search/replace blocks,
//! unified diffs, commands, directives).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = mmm::response::parse(&text);
});
