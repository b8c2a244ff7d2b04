//! Routing a key to its partition: defined in `kahuna-proto` (clients route with it
//! too), used here unchanged.

pub use kahuna_proto::routing::*;
