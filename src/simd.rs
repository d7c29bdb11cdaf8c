//! What the CPU's vector units can do, checked once per process, for the few loops that
//! are compiled a second time for wider vectors (`#[target_feature]`) and chosen at run
//! time: the binary itself targets baseline x86-64 (SSE2), which every CPU runs.
//!
//! Those loops use only IEEE operations that give the same bits at every vector width
//! (Rust never contracts a multiply and an add into a fused one unless asked), so a
//! result does not depend on which variant ran, except where a loop says otherwise.

/// Whether the CPU has AVX-512F (always `false` off x86-64).
pub fn avx512f() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx512f"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU has AVX2 and FMA (always `false` off x86-64).
pub fn avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        use std::sync::OnceLock;
        static HAS: OnceLock<bool> = OnceLock::new();
        *HAS.get_or_init(|| is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}
