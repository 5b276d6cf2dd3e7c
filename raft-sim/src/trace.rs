//! The trace of a run: a hash of every event (always), and the events as text lines (with
//! `--trace FILE`). Two runs with the same hash took the same steps.

/// FNV-1a, 64-bit: tiny, deterministic on every platform.
#[derive(Clone, Debug)]
pub struct TraceHash(u64);

impl Default for TraceHash {
    fn default() -> Self {
        TraceHash(0xcbf2_9ce4_8422_2325)
    }
}

impl TraceHash {
    /// Mixes in one number.
    #[inline]
    pub fn write_u64(&mut self, v: u64) {
        for b in v.to_le_bytes() {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Mixes in bytes.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 ^= u64::from(b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// The hash so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// Hash plus optional text lines.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    pub(crate) hash: TraceHash,
    pub(crate) lines: Option<Vec<String>>,
}

impl Trace {
    pub(crate) fn new(keep_lines: bool) -> Trace {
        Trace { hash: TraceHash::default(), lines: keep_lines.then(Vec::new) }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.lines.is_some()
    }

    /// Records a line (only built when tracing to a file).
    pub(crate) fn line(&mut self, at_us: u64, text: impl FnOnce() -> String) {
        if let Some(lines) = &mut self.lines {
            lines.push(format!("{:>10.3}ms {}", at_us as f64 / 1000.0, text()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_every_value_and_its_order() {
        let h = |vals: &[u64]| {
            let mut t = TraceHash::default();
            vals.iter().for_each(|&v| t.write_u64(v));
            t.value()
        };
        assert_eq!(h(&[1, 2, 3]), h(&[1, 2, 3]));
        assert_ne!(h(&[1, 2, 3]), h(&[1, 3, 2]));
        assert_ne!(h(&[1, 2, 3]), h(&[1, 2, 4]));
    }
}
