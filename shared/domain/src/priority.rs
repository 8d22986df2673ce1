use serde::{Deserialize, Serialize};

use crate::FieldError;

/// A message's priority, 1 (lowest) to 10 (highest); 5 by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u8")]
pub struct Priority(u8);

impl Priority {
    pub const DEFAULT: Priority = Priority(5);
    /// The AMQP `x-max-priority` of the priority-capable queues.
    pub const MAX_BAND: u8 = 5;

    pub fn parse(value: i64) -> Result<Self, FieldError> {
        if (1..=10).contains(&value) {
            Ok(Priority(value as u8))
        } else {
            Err(FieldError::new(
                "priority",
                format!("must be an integer from 1 to 10, got {value}"),
            ))
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// The AMQP priority band: 1–2 → 1, 3–4 → 2, 5–6 → 3, 7–8 → 4, 9–10 → 5.
    /// Classic queues keep one internal queue per band, so five bands cost
    /// less than ten and still order what campaigns distinguish.
    pub fn band(self) -> u8 {
        self.0.div_ceil(2)
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<i64> for Priority {
    type Error = FieldError;

    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Priority::parse(value)
    }
}

impl From<Priority> for u8 {
    fn from(p: Priority) -> u8 {
        p.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_map_to_five_ordered_bands() {
        let bands: Vec<u8> = (1..=10)
            .map(|p| Priority::parse(p).map(Priority::band).unwrap_or(0))
            .collect();
        assert_eq!(bands, vec![1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    }

    #[test]
    fn out_of_range_priorities_are_refused_naming_the_field() {
        for bad in [0, 11, -1] {
            let err = Priority::parse(bad).expect_err("out of range");
            assert_eq!(err.field, "priority");
        }
    }
}
