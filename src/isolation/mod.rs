//! Isolating servers and builds from each other and from the host.
pub mod cgroup;
