//! A schema object's numeric bounds (`minimum`, `maximum`, `exclusiveMinimum`,
//! `exclusiveMaximum`), compared exactly or not at all. Integer bounds are folded into one
//! inclusive `i128` range when compiled, so an integer value (the common case: counts, ids,
//! quantities) costs two comparisons; a float on either side goes through `f64`, and only
//! where that conversion is exact and the float is not within a few units of its last place
//! from the bound (another parser may round that last bit the other way).

use std::cmp::Ordering;

use jsonschema::json::JsonNumber;

use crate::policy::json_tape::Num;

/// How a number must compare with a bound.
#[derive(Debug, Clone, Copy)]
pub(super) enum BoundKind {
    Minimum,
    Maximum,
    ExclusiveMinimum,
    ExclusiveMaximum,
}

/// The bounds of one schema object.
#[derive(Debug)]
pub(super) struct Bounds {
    /// Every bound, as written (what a float value is compared with).
    all: Vec<(BoundKind, Num)>,
    /// The bounds that are floats (what an integer value is compared with besides `range`).
    floats: Vec<(BoundKind, Num)>,
    /// The inclusive range the integer bounds leave to an integer value.
    range: (i128, i128),
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            all: Vec::new(),
            floats: Vec::new(),
            range: (i128::MIN, i128::MAX),
        }
    }
}

impl Bounds {
    /// Adds a bound.
    pub(super) fn add(&mut self, kind: BoundKind, bound: Num) {
        self.all.push((kind, bound));
        let Some(bound) = integer(bound) else {
            self.floats.push((kind, bound));
            return;
        };
        let (low, high) = &mut self.range;
        // Integers are at most 64 bits, so one more or less never overflows an i128.
        match kind {
            BoundKind::Minimum => *low = (*low).max(bound),
            BoundKind::ExclusiveMinimum => *low = (*low).max(bound + 1),
            BoundKind::Maximum => *high = (*high).min(bound),
            BoundKind::ExclusiveMaximum => *high = (*high).min(bound - 1),
        }
    }

    /// Whether `value` is within every bound; `false` also when that is not sure.
    pub(super) fn hold(&self, value: Num) -> bool {
        match integer(value) {
            Some(integer) => {
                (self.range.0..=self.range.1).contains(&integer)
                    && self
                        .floats
                        .iter()
                        .all(|&(kind, bound)| kind.holds(value, bound))
            }
            None => self
                .all
                .iter()
                .all(|&(kind, bound)| float_holds(kind, value, bound)),
        }
    }
}

/// An integer value or bound, widened; `None` for a float.
fn integer(number: Num) -> Option<i128> {
    match number {
        Num::Unsigned(u) => Some(i128::from(u)),
        Num::Signed(i) => Some(i128::from(i)),
        Num::Float(_) => None,
    }
}

/// A float value against a bound: not sure when it is within a few units of the last place
/// of the bound.
fn float_holds(kind: BoundKind, value: Num, bound: Num) -> bool {
    if let (Num::Float(v), Some(b)) = (value, bound.as_f64()) {
        if (v - b).abs() <= v.abs().max(b.abs()) * f64::EPSILON * 4.0 {
            return false;
        }
    }
    kind.holds(value, bound)
}

/// Integers `f64` holds exactly (its 53-bit significand).
const EXACT_IN_F64: u64 = 1 << 53;

/// `value` against `bound`, or `None` when `f64` cannot compare them exactly.
fn compare(value: Num, bound: Num) -> Option<Ordering> {
    match (value, bound) {
        (Num::Unsigned(a), Num::Unsigned(b)) => Some(a.cmp(&b)),
        (Num::Signed(a), Num::Signed(b)) => Some(a.cmp(&b)),
        (Num::Unsigned(_), Num::Signed(_)) => Some(Ordering::Greater),
        (Num::Signed(_), Num::Unsigned(_)) => Some(Ordering::Less),
        (Num::Float(a), Num::Float(b)) => a.partial_cmp(&b),
        (Num::Float(a), integer) => a.partial_cmp(&exact_f64(integer)?),
        (integer, Num::Float(b)) => exact_f64(integer)?.partial_cmp(&b),
    }
}

/// An integer as `f64` when it converts exactly.
#[allow(clippy::cast_precision_loss)] // Only magnitudes up to 2^53, which convert exactly.
fn exact_f64(integer: Num) -> Option<f64> {
    match integer {
        Num::Unsigned(u) if u <= EXACT_IN_F64 => Some(u as f64),
        Num::Signed(i) if i.unsigned_abs() <= EXACT_IN_F64 => Some(i as f64),
        _ => None,
    }
}

impl BoundKind {
    fn holds(self, value: Num, bound: Num) -> bool {
        let Some(order) = compare(value, bound) else {
            return false;
        };
        match self {
            BoundKind::Minimum => order != Ordering::Less,
            BoundKind::Maximum => order != Ordering::Greater,
            BoundKind::ExclusiveMinimum => order == Ordering::Greater,
            BoundKind::ExclusiveMaximum => order == Ordering::Less,
        }
    }
}
