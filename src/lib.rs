//! miso: share NVIDIA datacenter GPUs among deep-learning jobs with MIG, choosing partitions from
//! short MPS measurements (after MISO, SoCC'22). See ARCHITECTURE.md for the module map.

pub mod control;
pub mod gpu;
pub mod optimizer;
pub mod perf;
pub mod policy;
pub mod predictor;
pub mod rl;
pub mod service;
pub mod sim;
