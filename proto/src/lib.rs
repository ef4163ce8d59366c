//! Protocol definitions shared by flotilla's crates.
