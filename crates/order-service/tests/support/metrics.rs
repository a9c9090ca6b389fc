//! Reading a figure off the service's `/metrics` exposition.

/// The value of the gauge or counter `name` (without labels) in the
/// Prometheus text `text`; panics when it is missing.
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| {
            l.strip_prefix(name)
                .filter(|rest| rest.starts_with(' '))
                .and_then(|rest| rest.trim().parse().ok())
        })
        .unwrap_or_else(|| panic!("metric {name} missing"))
}
