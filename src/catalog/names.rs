//! Topic and group names: Kafka's rules, plus runnel's reservation of the `__` prefix.

use crate::error::{Error, Result};

/// The longest topic name, as in Kafka.
pub const MAX_TOPIC_NAME_LEN: usize = 249;

/// Checks a topic name against Kafka's rules: 1 to 249 characters of `[a-zA-Z0-9._-]`, and not
/// `.` or `..`. Names starting with `__` are reserved for runnel's internal topics.
pub fn validate_topic_name(name: &str) -> Result<()> {
    let fail = |reason| Err(Error::InvalidTopic { name: name.to_string(), reason });
    if name.is_empty() {
        return fail("the name is empty");
    }
    if name.len() > MAX_TOPIC_NAME_LEN {
        return fail("the name is longer than 249 characters");
    }
    if name == "." || name == ".." {
        return fail("\".\" and \"..\" are not allowed");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-') {
        return fail("only ASCII letters, digits, '.', '_' and '-' are allowed");
    }
    Ok(())
}

/// Whether a topic name is reserved for runnel's own use.
pub fn is_internal(name: &str) -> bool {
    name.starts_with("__")
}

/// Checks a consumer group id: 1 to 255 bytes of UTF-8 without control characters.
pub fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() || group.len() > 255 || group.chars().any(char::is_control) {
        return Err(Error::InvalidArgument(format!("group id {group:?} must be 1 to 255 bytes with no control characters")));
    }
    Ok(())
}

/// Splits a partition directory name `<topic>-<partition>`.
pub fn parse_partition_dir(name: &str) -> Option<(&str, u32)> {
    let (topic, p) = name.rsplit_once('-')?;
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || (p.len() > 1 && p.starts_with('0')) {
        return None;
    }
    validate_topic_name(topic).ok()?;
    Some((topic, p.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_rules() {
        for ok in ["a", "orders", "a.b_c-d", "A9", &"x".repeat(249)] {
            assert!(validate_topic_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a b", "ü", "a\0", &"x".repeat(250)] {
            assert!(validate_topic_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn partition_dirs() {
        assert_eq!(parse_partition_dir("a-1-0"), Some(("a-1", 0)));
        assert_eq!(parse_partition_dir("orders-12"), Some(("orders", 12)));
        assert_eq!(parse_partition_dir("orders-012"), None);
        assert_eq!(parse_partition_dir("orders"), None);
        assert_eq!(parse_partition_dir("..-0"), None);
    }
}
