//! Identifiers. Tally makes UUID v7 (time ordered) wherever it makes an id.

use uuid::Uuid;

/// A new UUID v7: sortable by creation time, so indexes on it stay append-mostly.
pub fn new_v7() -> Uuid {
    Uuid::now_v7()
}
