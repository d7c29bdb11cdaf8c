//! Fuzzes the daemon's label parser (`POST /projects/{id}/labels` bodies): any bytes,
//! with and without a named CRS, must give labels or a clean error, never a panic, and
//! every accepted label must carry one of the project's classes or the reserved
//! `unusable`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nexttile::server::labels::parse_labels;

fuzz_target!(|data: &[u8]| {
    let classes = vec!["Forest".to_string(), "SeaLake".to_string(), "7".to_string()];
    for crs in [None, Some("EPSG:32618")] {
        if let Ok(labels) = parse_labels(data, &classes, crs, 100) {
            assert!(!labels.is_empty());
            assert!(labels.iter().all(|l| classes.contains(&l.class)
                || l.class == nexttile::aoi::UNUSABLE_CLASS));
        }
    }
});
