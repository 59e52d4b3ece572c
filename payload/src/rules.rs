//! What a client value must be to be stored: the rules a write's payload conversion (`convert.rs`) and
//! the validation of the other client fields (the `domain` crate's `input.rs`) both apply.
//!
//! - Member names MongoDB can store and query: not empty, no leading `$`, no `.`, no NUL.
//! - Nesting within the configured depth.
//! - Integers JavaScript holds exactly: within ±[`MAX_SAFE_INTEGER`].
//! - Each member name once per object (RFC 8785 requires it, and a repeated name means different
//!   things to different parsers).

/// 2^53 - 1, JavaScript's `Number.MAX_SAFE_INTEGER`: the largest integer every party (the Node service,
/// JSON parsers, RFC 8785) holds exactly.
pub const MAX_SAFE_INTEGER: i64 = 9_007_199_254_740_991;

/// A rule a client value breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    /// The name, as Rust's `escape_debug` writes it (a NUL stays visible in messages).
    #[error("key {0:?} cannot be stored (no leading '$', no '.', no NUL, not empty)")]
    ForbiddenName(String),
    #[error("nested deeper than {0} levels")]
    TooDeep(usize),
    #[error("integer {0} is outside the exactly representable range")]
    UnsafeInteger(String),
    #[error("member {0:?} appears twice")]
    RepeatedName(String),
}

/// A member name MongoDB can store and query by.
pub fn check_name(name: &str) -> Result<(), Violation> {
    if name.is_empty() || name.starts_with('$') || name.contains('.') || name.contains('\0') {
        return Err(Violation::ForbiddenName(name.escape_debug().to_string()));
    }
    Ok(())
}

/// `depth` levels of objects and arrays, of at most `max_depth`.
pub fn check_depth(depth: usize, max_depth: usize) -> Result<(), Violation> {
    if depth > max_depth {
        return Err(Violation::TooDeep(max_depth));
    }
    Ok(())
}

/// An integer JavaScript holds exactly.
pub fn safe_integer(value: i64) -> Result<i64, Violation> {
    if value.unsigned_abs() > MAX_SAFE_INTEGER.unsigned_abs() {
        return Err(Violation::UnsafeInteger(value.to_string()));
    }
    Ok(value)
}

/// An unsigned integer JavaScript holds exactly.
pub fn safe_unsigned(value: u64) -> Result<i64, Violation> {
    i64::try_from(value).map_err(|_| Violation::UnsafeInteger(value.to_string())).and_then(safe_integer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_mongodb_cannot_store_are_refused() {
        for bad in ["", "$where", "a.b", "nul\0"] {
            assert!(matches!(check_name(bad), Err(Violation::ForbiddenName(_))), "{bad:?}");
        }
        assert_eq!(check_name("nul\0"), Err(Violation::ForbiddenName("nul\\0".into())));
        for good in ["a", "a$", "é", " "] {
            assert_eq!(check_name(good), Ok(()), "{good:?}");
        }
    }

    #[test]
    fn integers_are_safe_up_to_two_to_the_53_minus_one() {
        assert_eq!(MAX_SAFE_INTEGER, (1 << 53) - 1);
        for ok in [0, MAX_SAFE_INTEGER, -MAX_SAFE_INTEGER] {
            assert_eq!(safe_integer(ok), Ok(ok));
        }
        for bad in [MAX_SAFE_INTEGER + 1, -MAX_SAFE_INTEGER - 1, i64::MIN, i64::MAX] {
            assert_eq!(safe_integer(bad), Err(Violation::UnsafeInteger(bad.to_string())));
        }
        assert_eq!(safe_unsigned(MAX_SAFE_INTEGER as u64), Ok(MAX_SAFE_INTEGER));
        assert!(safe_unsigned(u64::MAX).is_err());
    }

    #[test]
    fn depth_is_bounded() {
        assert_eq!(check_depth(16, 16), Ok(()));
        assert_eq!(check_depth(17, 16), Err(Violation::TooDeep(16)));
    }
}
