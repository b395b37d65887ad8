//! Test support for irsa-doctor's crates, never published: moto, the corpus format, polling,
//! loopback HTTP, and the operator's end-to-end fixtures.

pub mod cluster;
pub mod corpus;
pub use control_plane::eks;
pub mod moto;
pub mod net;
pub mod operator;
pub mod wait;
