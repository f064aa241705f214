//! Application variables granted to this component.

use crate::platform::variables;

/// The value of one of the component's variables (`[component.<id>.variables]`).
pub fn get(name: &str) -> Result<String, String> {
    variables::get(name).map_err(|variables::Error::Undefined(detail)| detail)
}
