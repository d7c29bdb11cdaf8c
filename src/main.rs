//! The `nexttile` command line.

fn main() {
    // candle multiplies the head's small matrices with rayon-parallel gemm by default;
    // for a 64 × 256 minibatch the thread hand-offs cost more than they save, and
    // `nexttile eval` already runs one trial per core. Measured on the 2-core
    // development machine (`nexttile eval ... --queries random --steps 600`): 2.6 s per
    // head training with the default, 0.70 s with one thread, identical results.
    // A user's own RAYON_NUM_THREADS wins.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        // SAFETY: first statement of `main`, before any other thread exists.
        unsafe { std::env::set_var("RAYON_NUM_THREADS", "1") };
    }
    // glibc returns freed blocks over 128 KiB to the kernel at once (mmap/munmap, and
    // trimming the heap's top), so every head-training step, whose minibatch and weight
    // tensors are 0.1–1 MiB, paid for fresh zeroed pages: 1.86 M page faults and 2.8 s
    // of system time in a 600-step training on 1024-d embeddings, 6.3 s in all, 2.4 s
    // once blocks under 32 MiB are reused (`benches/warm.rs`, sample, 200 labels).
    // Freed memory above 64 MiB at the heap's top still goes back.
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: still single-threaded; mallopt only sets allocator parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
    // `nexttile score … | head` must end quietly when the reader goes away, as
    // Unix tools do, instead of panicking on the failed write: restore the
    // default SIGPIPE action that the Rust runtime replaces with "ignore". The
    // daemon keeps "ignore": a client hanging up must never end it.
    #[cfg(unix)]
    if std::env::args().nth(1).as_deref() != Some("serve") {
        // SAFETY: still single-threaded; SIG_DFL is a valid disposition for SIGPIPE.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    std::process::exit(nexttile::cli::main());
}
