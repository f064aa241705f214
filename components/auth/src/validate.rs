//! The account fields' rules (username, email, password), added to the
//! SDK's [`Checks`], which collects every violation into one 400.

pub use lamina_sdk::validate::Checks;
use lamina_sdk::validate::has_control;

/// The account rules, on the SDK's collector.
pub trait AccountRules {
    /// 3–50 of `A-Z a-z 0-9 _ . -`.
    fn username(&mut self, field: &str, value: &str);
    /// A plausible address; returns it normalized (trimmed, lower-case).
    fn email(&mut self, field: &str, value: &str) -> String;
    /// 8–128 characters with at least three of: lower-case, upper-case,
    /// digit, symbol.
    fn password(&mut self, field: &str, value: &str);
}

impl AccountRules for Checks {
    fn username(&mut self, field: &str, value: &str) {
        let ok_chars = value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
        if !(3..=50).contains(&value.len()) || !ok_chars {
            self.fail(
                field,
                "3 to 50 characters: letters, digits, underscore, dot or hyphen",
            );
        }
    }

    fn email(&mut self, field: &str, value: &str) -> String {
        let email = value.trim().to_ascii_lowercase();
        if !valid_email(&email) {
            self.fail(field, "a valid email address of at most 254 characters");
        }
        email
    }

    fn password(&mut self, field: &str, value: &str) {
        let length = value.chars().count();
        let classes = [
            value.chars().any(|c| c.is_lowercase()),
            value.chars().any(|c| c.is_uppercase()),
            value.chars().any(|c| c.is_ascii_digit()),
            value.chars().any(|c| !c.is_alphanumeric()),
        ]
        .iter()
        .filter(|&&present| present)
        .count();
        if !(8..=128).contains(&length) || classes < 3 || has_control(value) {
            self.fail(
                field,
                "8 to 128 characters with at least three of: lower-case, upper-case, digit, symbol",
            );
        }
    }
}

/// `local@domain.tld`: ASCII, no spaces, a dotted domain of valid labels.
fn valid_email(email: &str) -> bool {
    let Some((local, domain)) = email.rsplit_once('@') else {
        return false;
    };
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && local
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+/=?^_`{|}~.-".contains(c))
        && !local.starts_with('.')
        && !local.ends_with('.')
        && !local.contains("..");
    let labels: Vec<&str> = domain.split('.').collect();
    let domain_ok = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        });
    email.len() <= 254 && local_ok && domain_ok
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails() {
        for good in ["a@b.co", "first.last+tag@sub.example.org"] {
            assert!(valid_email(good), "{good}");
        }
        for bad in [
            "", "a", "a@b", "@b.co", "a@.co", "a b@c.co", "a@b..co", ".a@b.co",
        ] {
            assert!(!valid_email(bad), "{bad}");
        }
    }

    #[test]
    fn passwords_need_three_classes() {
        let check = |p: &str| {
            let mut c = Checks::default();
            c.password("password", p);
            c.is_empty()
        };
        assert!(check("Correct-horse1"));
        assert!(check("lower UPPER 1"));
        assert!(!check("short1A"));
        assert!(!check("alllowercase1"));
        assert!(!check(&"Aa1".repeat(50)));
        assert!(!check("Nul\0byte-1"));
        // Length is in characters: 50 CJK characters + classes fit.
        assert!(check(&format!("{}Aa1", "密".repeat(50))));
    }
}
