//! irsa-doctor: diagnoses IAM Roles for Service Accounts (IRSA) on Amazon EKS.
//!
//! - [`api`]: the IrsaCheck custom resource and its validation.
//! - [`gather`]: where each fact comes from (ServiceAccounts, the issuer, pods, AWS) → `Facts`.
//!   The verdict itself is made by `irsa_core::diagnose`, which is pure.
//! - [`operator`]: `irsa-doctor run` — watches, reconcile, sweep, status, Events, probe, metrics.
//! - [`cli`]: the commands (`lint`, `check`, `crd`, `run`) and how they print.

pub mod api;
pub mod cli;
pub mod client;
pub mod gather;
pub mod operator;
pub mod telemetry;
