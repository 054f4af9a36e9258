//! The argument readers under their former path, while binding files not yet converted to
//! typed parameters ([`super::convert::Arg`]) still call `args::…`; the readers themselves live
//! in [`super::convert::read`], the one place JS values are read.

pub(crate) use super::convert::read::*;
