//! The thread pool selection and the other CPU-heavy pure stages (the head's MC passes,
//! the distance to the labelled tiles, the outputs' footprints) run on: its own, sized to
//! the machine's cores (`NEXTTILE_SELECTION_THREADS` overrides), so that the binary's
//! `RAYON_NUM_THREADS=1` for candle's small head matrices (`src/main.rs`) does not make
//! them single-threaded, and benches and binary run them alike. The lowest layer: every
//! module may use it.

use std::sync::OnceLock;

/// Environment variable that sets the selection pool's size (threads ≥ 1).
pub const SELECTION_THREADS_ENV: &str = "NEXTTILE_SELECTION_THREADS";

/// Threads for selection: `NEXTTILE_SELECTION_THREADS` when it is a number ≥ 1, else the
/// machine's available parallelism.
pub fn selection_threads() -> usize {
    std::env::var(SELECTION_THREADS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n >= 1)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// Runs `f` on the selection pool (built on first use; when it cannot be built, `f`
/// runs on the caller's pool instead).
pub fn on_selection_pool<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    static POOL: OnceLock<Option<rayon::ThreadPool>> = OnceLock::new();
    let pool = POOL.get_or_init(|| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(selection_threads())
            .thread_name(|i| format!("nexttile-select-{i}"))
            .build()
            .ok()
    });
    match pool {
        Some(p) => p.install(f),
        None => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_runs_on_its_own_pool_with_the_machines_cores() {
        let threads = on_selection_pool(rayon::current_num_threads);
        assert_eq!(threads, selection_threads());
        let name = on_selection_pool(|| std::thread::current().name().map(String::from));
        assert!(
            name.is_some_and(|n| n.starts_with("nexttile-select-")),
            "selection ran outside its pool"
        );
    }
}
