//! Tests of the cgroup module.
