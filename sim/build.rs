//! Declares `cfg(tokio_unstable)`: the simulation is bit-for-bit deterministic only when the
//! whole build has it (`RUSTFLAGS="--cfg tokio_unstable"`), because only then does turmoil
//! seed each simulated host's tokio RNG (behind `select!` and `watch` wake-ups).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(tokio_unstable)");
}
