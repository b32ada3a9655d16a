//! Benchmarks of the context next to tokio-util's `CancellationToken`.

fn main() {}
