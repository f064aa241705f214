//! Field rules: every violation of a request is collected, so one 400
//! (problem+json with an `errors` entry per field) lists them all.

use crate::api::{ApiError, FieldError};

/// Collects field errors.
#[derive(Debug, Default)]
pub struct Checks(Vec<FieldError>);

impl Checks {
    /// Records that `field` is wrong.
    pub fn fail(&mut self, field: &str, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Whether nothing failed so far.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `Err(400)` listing the failures, if any.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(self.0))
        }
    }

    /// A required string of at most `max` characters, none of them
    /// control characters.
    pub fn text(&mut self, field: &str, value: &str, max: usize) {
        if value.trim().is_empty() || value.chars().count() > max || has_control(value) {
            self.fail(
                field,
                format!("required, at most {max} characters, no control characters"),
            );
        }
    }

    /// Free text (a message, a prompt) of at most `max` characters: line
    /// breaks and tabs allowed, no other control characters, no NUL.
    pub fn long_text(&mut self, field: &str, value: &str, max: usize) {
        let bad_control = value
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
        if value.chars().count() > max || bad_control {
            self.fail(
                field,
                format!("at most {max} characters, no control characters but line breaks and tabs"),
            );
        }
    }
}

/// Whether `value` has a control character.
pub fn has_control(value: &str) -> bool {
    value.chars().any(char::is_control)
}

#[cfg(test)]
mod tests {
    use super::Checks;

    #[test]
    fn collects_every_failure() {
        let mut checks = Checks::default();
        checks.text("name", " ", 10);
        checks.text("title", "fine", 10);
        checks.long_text("content", "two\nlines\tand a tab", 100);
        checks.long_text("prompt", "bell\u{7}", 100);
        let error = checks.finish().unwrap_err();
        let fields: Vec<&str> = error.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "prompt"]);
    }
}
