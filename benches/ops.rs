//! Fused ops vs their reference compositions (being written).
fn main() {}
