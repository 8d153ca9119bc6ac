//! What the load benchmarks' binaries share (`receipt-cost`, `tlog-proof-latency`).

pub mod load;
