//! `RingBuffer`: a bounded buffer of JS values.

use crate::binding::error::Result;
use std::collections::VecDeque;

use napi::UnknownRef;
use napi::bindgen_prelude::{Env, JsObjectValue, JsValue, Object, ObjectFinalize, Unknown};
use napi_derive::napi;

use crate::binding::convert::{Arg, Int, arg_names};

arg_names! {
    CapacityArg = "capacity";
    CountArg = "n";
}

/// A fixed-capacity list of any JS values: pushing onto a full buffer drops the oldest.
///
/// Node 20 cannot hold a reference to a primitive, so each item is kept inside a one-field
/// holder object and the reference is to that.
#[napi(custom_finalize)]
pub struct RingBuffer {
    pub(super) items: VecDeque<UnknownRef>,
    pub(super) capacity: usize,
}

#[napi]
impl RingBuffer {
    /// A buffer holding at most `capacity` items (a positive integer).
    #[napi(constructor)]
    pub fn new(
        #[napi(ts_arg_type = "number")] capacity: Arg<Int<1, { u32::MAX as u64 }>, CapacityArg>,
    ) -> Result<Self> {
        Ok(RingBuffer {
            items: VecDeque::new(),
            capacity: capacity.into_inner().0 as usize,
        })
    }

    /// Appends `item`; when full, the oldest item is dropped.
    #[napi]
    pub fn push(&mut self, env: Env, #[napi(ts_arg_type = "unknown")] item: Unknown) -> Result<()> {
        if self.items.len() == self.capacity
            && let Some(oldest) = self.items.pop_front()
        {
            oldest.unref(&env)?;
        }
        let mut holder = Object::new(&env)?;
        holder.set(HOLDER_FIELD, item)?;
        self.items.push_back(holder.to_unknown().create_ref()?);
        Ok(())
    }

    /// Every item, oldest first.
    #[napi(ts_return_type = "unknown[]")]
    pub fn to_array<'env>(&self, env: &'env Env) -> Result<Vec<Unknown<'env>>> {
        self.items
            .iter()
            .map(|item| Ok(held_value(env, item)?))
            .collect()
    }

    /// The newest `n` items (a non-negative integer), oldest first.
    #[napi(ts_return_type = "unknown[]")]
    pub fn get_tail<'env>(
        &self,
        env: &'env Env,
        #[napi(ts_arg_type = "number")] n: Arg<Int<0, { u32::MAX as u64 }>, CountArg>,
    ) -> Result<Vec<Unknown<'env>>> {
        let n = n.into_inner().0 as usize;
        let start = self.items.len().saturating_sub(n);
        self.items
            .range(start..)
            .map(|item| Ok(held_value(env, item)?))
            .collect()
    }

    /// How many items the buffer holds.
    #[napi]
    pub fn get_size(&self) -> u32 {
        self.items.len() as u32
    }

    /// Removes every item.
    #[napi]
    pub fn clear(&mut self, env: Env) -> Result<()> {
        for item in self.items.drain(..) {
            item.unref(&env)?;
        }
        Ok(())
    }
}

/// The field of a holder object that carries a `RingBuffer` item.
pub(super) const HOLDER_FIELD: &str = "value";

pub(super) fn held_value<'env>(env: &'env Env, holder: &UnknownRef) -> napi::Result<Unknown<'env>> {
    // SAFETY: every reference in a RingBuffer points to a holder object made by `push`.
    let holder = unsafe { holder.get_value(env)?.cast::<Object>() }?;
    holder.get_named_property::<Unknown>(HOLDER_FIELD)
}

impl ObjectFinalize for RingBuffer {
    fn finalize(mut self, env: Env) -> napi::Result<()> {
        self.clear(env)
            .map_err(|failure| napi::Error::from_reason(failure.message))
    }
}
