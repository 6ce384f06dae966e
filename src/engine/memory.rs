//! The allocator's share of peak memory. glibc gives each thread that allocates at the same time as another
//! its own arena (up to 8 per core) and keeps what is freed in each: when a stage allocates a block's buffers on
//! one thread while another frees the previous block's (a block read beside the previous block's work), freed
//! memory sits in several arenas at once. Measured on `balance --draws 100` at 4096 x 4096 px
//! (`scripts/bench-chain.sh 4096`): peak RSS 282 MiB with glibc's default, 246 MiB with one arena per worker
//! thread, at about 2 % of the chain's time at 2048 px.

/// Hold glibc to one malloc arena per worker thread (`threads`, at least 1); to be called before a second
/// thread allocates (glibc fixes the limit when it first makes a second arena). Elsewhere: nothing.
pub fn limit_arenas(threads: usize) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn mallopt(param: std::ffi::c_int, value: std::ffi::c_int) -> std::ffi::c_int;
        }
        /// `M_ARENA_MAX` in glibc's <malloc.h> (the parameter's number in glibc's ABI).
        const M_ARENA_MAX: std::ffi::c_int = -8;
        let n = threads.clamp(1, 1024) as std::ffi::c_int;
        // SAFETY: mallopt only sets a parameter of glibc's allocator; it is called before the stage allocates
        // from several threads, and a refused value leaves glibc's default in place.
        unsafe {
            mallopt(M_ARENA_MAX, n);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = threads;
}
