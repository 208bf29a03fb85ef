//! How gateway names become slugs and tool names become exposed names.
//!
//! Exposed names are only ever produced here and looked up in the catalog's
//! map; nothing parses a gateway or tool back out of a string, so a separator
//! that also occurs inside names is harmless.

/// Lower-case ASCII letters and digits, runs of anything else collapsed to one
/// `-`, no leading or trailing `-`. "My Counter (v2)" → "my-counter-v2".
pub fn slugify(name: &str) -> String {
    let mut slug = String::with_capacity(name.len());
    let mut pending_dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            if pending_dash && !slug.is_empty() {
                slug.push('-');
            }
            pending_dash = false;
            slug.push(c.to_ascii_lowercase());
        } else {
            pending_dash = true;
        }
    }
    slug
}

pub fn exposed_name(gateway_slug: &str, separator: &str, original: &str) -> String {
    let mut s = String::with_capacity(gateway_slug.len() + separator.len() + original.len());
    s.push_str(gateway_slug);
    s.push_str(separator);
    s.push_str(original);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(slugify("My Counter (v2)"), "my-counter-v2");
        assert_eq!(slugify("  --a__b--  "), "a-b");
        assert_eq!(slugify("Zähler"), "z-hler");
        assert_eq!(slugify("!!!"), "");
    }

    #[test]
    fn exposed() {
        assert_eq!(
            exposed_name("counter", "-", "increment"),
            "counter-increment"
        );
        assert_eq!(exposed_name("a", "__", "b"), "a__b");
    }
}
