//! Band naming: matching a model's band list to a raster's bands.

/// Sentinel-2 L1C band order of a 13-band stack (as the `samples/` scene and
/// Sen1Floods11 store them).
pub const S2_L1C_BANDS: [&str; 13] = [
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
];

/// Sentinel-2 L2A band order of a 12-band stack (no cirrus band B10).
pub const S2_L2A_BANDS: [&str; 12] = [
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
];

/// Canonical form of a band name: upper case, first word only, and Sentinel-2
/// numbers zero-padded (`b4` → `B04`, `B8a` → `B8A`, `B1 (coastal)` → `B01`).
///
/// # Examples
/// ```
/// use nexttile::raster::canonical_band_name;
/// assert_eq!(canonical_band_name("B4"), "B04");
/// assert_eq!(canonical_band_name(" b8a "), "B8A");
/// assert_eq!(canonical_band_name("VV"), "VV");
/// ```
pub fn canonical_band_name(raw: &str) -> String {
    let word = raw
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_uppercase();
    if let Some(rest) = word.strip_prefix('B') {
        let (digits, suffix) = match rest.strip_suffix('A') {
            Some(d) => (d, "A"),
            None => (rest, ""),
        };
        if !digits.is_empty()
            && digits.len() <= 2
            && digits.chars().all(|c| c.is_ascii_digit())
            && let Ok(n) = digits.parse::<u32>()
        {
            return if suffix.is_empty() {
                format!("B{n:02}")
            } else {
                format!("B{n}{suffix}")
            };
        }
    }
    word
}

/// Names to assume for a stack without band descriptions, when its band count
/// identifies it as a Sentinel-2 stack.
pub fn default_band_names(count: usize) -> Option<&'static [&'static str]> {
    match count {
        13 => Some(&S2_L1C_BANDS),
        12 => Some(&S2_L2A_BANDS),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_names() {
        for (raw, want) in [
            ("B1", "B01"),
            ("B01", "B01"),
            ("b12", "B12"),
            ("B8A", "B8A"),
            ("B08", "B08"),
            ("B4 red", "B04"),
            ("VH", "VH"),
            ("", ""),
            ("Band_1", "BAND_1"),
        ] {
            assert_eq!(canonical_band_name(raw), want, "{raw}");
        }
    }
}
