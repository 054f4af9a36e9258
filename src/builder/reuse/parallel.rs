//! Independent jobs on up to two threads (the machines this runs on are small, and hashing or
//! copying files gains little from more).

use std::sync::atomic::{AtomicUsize, Ordering};

/// Fewer jobs than this run on the calling thread alone.
const PARALLEL_THRESHOLD: usize = 64;

/// Runs `work(state, index)` for every index below `jobs`, on the calling thread and, for many
/// jobs, one more; each thread has its own `state` from `init`. Returns every job's result by
/// index; `None` for the jobs of a thread that panicked.
pub(crate) fn run_indexed<S, T: Send>(
    jobs: usize,
    init: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, usize) -> T + Sync,
) -> Vec<Option<T>> {
    let next = AtomicUsize::new(0);
    let run = || {
        let mut state = init();
        let mut done = Vec::new();
        loop {
            let index = next.fetch_add(1, Ordering::Relaxed);
            if index >= jobs {
                return done;
            }
            done.push((index, work(&mut state, index)));
        }
    };
    let two = jobs >= PARALLEL_THRESHOLD
        && std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let finished = std::thread::scope(|scope| {
        let helper = if two {
            std::thread::Builder::new()
                .name("build-cache".to_owned())
                .spawn_scoped(scope, run)
                .ok()
        } else {
            None
        };
        let mut finished = run();
        if let Some(Ok(theirs)) = helper.map(|helper| helper.join()) {
            finished.extend(theirs);
        }
        finished
    });
    let mut results: Vec<Option<T>> = (0..jobs).map(|_| None).collect();
    for (index, result) in finished {
        results[index] = Some(result);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_runs_once() {
        for jobs in [0, 1, 63, 64, 1000] {
            let results = run_indexed(
                jobs,
                || 0u32,
                |count, index| {
                    *count += 1;
                    index * 2
                },
            );
            let expected: Vec<Option<usize>> = (0..jobs).map(|i| Some(i * 2)).collect();
            assert_eq!(results, expected);
        }
    }
}
