//! Identifiers. Tally makes UUID v7 (time ordered) wherever it makes an id.

use uuid::Uuid;

/// A new UUID v7: sortable by creation time, so indexes on it stay append-mostly.
pub fn new_v7() -> Uuid {
    Uuid::now_v7()
}

/// `n` new UUID v7s in increasing order, for bulk writers: the first from [`new_v7`], each next
/// one the one before plus one (RFC 9562, section 6.2, method 2: a monotonic random part). One
/// clock reading for the whole run instead of one per id.
pub fn new_v7_run(n: usize) -> impl Iterator<Item = Uuid> {
    // The increments stay inside the lowest 32 bits, which are random: the counter `new_v7`
    // keeps above them (for ids made in the same millisecond) is never carried into.
    const LOW: u128 = 0xffff_ffff;
    let count = n as u128;
    // Runs too long for the low bits (none happen) get a clock reading per id instead.
    let first = (count <= LOW).then(|| loop {
        let candidate = new_v7().as_u128();
        if (candidate & LOW) + count <= LOW {
            break candidate;
        }
    });
    (0..count).map(move |k| match first {
        Some(first) => Uuid::from_u128(first + k),
        None => new_v7(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_increasing_unique_version_7_ids() {
        let run: Vec<Uuid> = new_v7_run(10_000).collect();
        assert_eq!(run.len(), 10_000);
        assert!(run.windows(2).all(|w| w[0] < w[1]));
        assert!(run
            .iter()
            .all(|id| id.get_version_num() == 7 && id.get_variant() == uuid::Variant::RFC4122));
        let later = new_v7_run(3).next().unwrap();
        assert!(run.iter().all(|id| *id != later));
        assert_eq!(new_v7_run(0).count(), 0);
    }
}
