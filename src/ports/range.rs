//! The range of ports servers may listen on: plain data, shared by the configuration, the
//! allocator and the errors (a leaf module, so `error` can name it).

/// An inclusive range of TCP ports servers may listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    /// First port of the range.
    pub start: u16,
    /// Last port of the range (inclusive).
    pub end: u16,
}

impl PortRange {
    /// How many ports the range holds.
    pub fn len(&self) -> usize {
        usize::from(self.end - self.start) + 1
    }

    /// Always false: a valid range holds at least one port.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Whether `port` lies in the range.
    pub fn contains(&self, port: u16) -> bool {
        (self.start..=self.end).contains(&port)
    }
}

impl Default for PortRange {
    /// `{ start: 4111, end: 4200 }` (SPEC §2).
    fn default() -> Self {
        PortRange {
            start: 4111,
            end: 4200,
        }
    }
}

impl std::fmt::Display for PortRange {
    /// `4111-4200`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}
