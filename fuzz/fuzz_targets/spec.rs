//! The spec parser: any bytes as `specs/fuzz.md` (front matter, markdown body, limits).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = mmm::spec::Spec::parse(std::path::Path::new("specs/fuzz.md"), data);
});
