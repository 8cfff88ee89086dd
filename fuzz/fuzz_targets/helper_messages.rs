//! The publisher's view of a hostile helper: a stream of datagrams through
//! the real decoder and validator. Whatever is accepted must never publish
//! a timestamp in the future, for a CPU out of range, or lower than before.
//!
//! Input: repeated [length byte, clock advance byte, datagram bytes...].
//! Run: cargo fuzz run helper_messages --sanitizer none (stable toolchain).
//! scripts/test builds it (without coverage instrumentation) so that it
//! keeps compiling against the publisher's library.
#![no_main]

use barrierd::update::{CpuWords, State};
use barrierd_privsep::ipc::{decode, HelperMessage};
use libfuzzer_sys::fuzz_target;

const NCPU: usize = 3;

fuzz_target!(|data: &[u8]| {
    let mut state = State::new(vec![CpuWords::default(); NCPU], 0);
    let mut published = [0u64; NCPU];
    let mut now = 1u64 << 32;
    let mut rest = data;
    while let [len, advance, tail @ ..] = rest {
        let (datagram, next) = tail.split_at((*len as usize).min(tail.len()));
        rest = next;
        now += u64::from(*advance) << 8;
        let Ok(HelperMessage::Snapshot { last_ns, demand_ns }) = decode(datagram) else {
            continue;
        };
        let Ok(pass) = state.apply(&last_ns, demand_ns, now) else {
            continue;
        };
        assert!(state.demand_ns() <= now);
        for (cpu, words) in pass.changed {
            assert!(cpu < NCPU);
            assert!(words.ns <= now);
            assert!(words.ns > published[cpu]);
            published[cpu] = words.ns;
        }
        assert_eq!(pass.last_interrupt_ns, *published.iter().min().unwrap());
        state.vtime_published(now);
    }
});
