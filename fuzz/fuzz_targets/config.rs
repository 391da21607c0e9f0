//! The config loader: any text as `.mmm/config.toml` (TOML, keys, values, origins).
#![no_main]

use libfuzzer_sys::fuzz_target;
use mmm::config::{SourceFile, Sources, load};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = Sources {
        repo: Some(SourceFile {
            path: ".mmm/config.toml".into(),
            text: text.to_owned(),
        }),
        ..Sources::default()
    };
    let _ = load(&sources);
});
