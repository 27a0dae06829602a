//! Parse benchmark (placeholder until the criterion benchmark lands).

fn main() {}
