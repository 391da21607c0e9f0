//! The SSE decoder of the Messages API stream: any bytes, cut into two chunks at the point the
//! first byte names (records split across reads), decoded as the streaming client does.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let _ = mmm::agent::anthropic::decode_stream(&[a, b], &mut |_| {});
});
