//! Any bytes, cut into reads at points the fuzzer chooses, frame into the same lines as one
//! read, each within the cap.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mastra_runner_local::logs::LineFramer;

fn frame(chunks: &[&[u8]], max: usize) -> Vec<String> {
    let mut framer = LineFramer::new(max);
    let mut lines = Vec::new();
    for chunk in chunks {
        framer.push(chunk, |l| lines.push(l.to_owned()));
    }
    framer.finish(|l| lines.push(l.to_owned()));
    lines
}

fuzz_target!(|input: &[u8]| {
    let Some((&control, bytes)) = input.split_first() else {
        return;
    };
    let max = usize::from(control % 64) + 1;
    let whole = frame(&[bytes], max);
    let step = usize::from(control / 64) + 1;
    let chunks: Vec<&[u8]> = bytes.chunks(step).collect();
    assert_eq!(frame(&chunks, max), whole);
    for line in whole {
        assert!(!line.contains('\n'));
        assert!(line.len() <= max * 3 + 64);
    }
});
