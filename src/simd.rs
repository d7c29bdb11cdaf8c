//! What the CPU's vector units can do, and [`widest!`], which compiles a loop for
//! AVX-512 and for AVX2 besides the baseline and runs the widest the CPU has: the binary
//! itself targets baseline x86-64 (SSE2), which every CPU runs.
//!
//! The loops given to [`widest!`] use only IEEE operations that give the same bits at
//! every vector width (Rust never contracts a multiply and an add into a fused one), so
//! a result does not depend on which variant ran.

/// Whether the CPU has AVX-512F (always `false` off x86-64). std caches the detection,
/// so asking costs an atomic load.
pub fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx512f");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether the CPU has AVX2 (always `false` off x86-64).
pub fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Whether the CPU has AVX2 and FMA (always `false` off x86-64).
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
    #[cfg(not(target_arch = "x86_64"))]
    return false;
}

/// Defines `fn name(args) -> ret { body }` whose body is compiled three times (baseline,
/// AVX2, AVX-512F) and run in the widest variant the CPU has ([`avx512f`], [`avx2`]).
/// Meant for short slice loops that the compiler vectorises; the body must give the
/// same bits at every width (see the module docs).
macro_rules! widest {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx512f")]
            fn avx512($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = "avx2")]
            fn avx2($($arg: $ty),*) $(-> $ret)? {
                portable($($arg),*)
            }
            #[cfg(target_arch = "x86_64")]
            {
                if $crate::simd::avx512f() {
                    // SAFETY: the CPU has AVX-512F (checked just now).
                    return unsafe { avx512($($arg),*) };
                }
                if $crate::simd::avx2() {
                    // SAFETY: the CPU has AVX2 (checked just now).
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use widest;
