//! A small parser for the Prometheus text exposition format and quantiles
//! from cumulative histogram buckets.

/// One sample line: `name{label="value",...} value [timestamp]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// A parsed scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scrape {
    pub samples: Vec<Sample>,
}

/// Parses the text format, skipping comments, blank lines and lines it cannot read.
pub fn parse(text: &str) -> Scrape {
    Scrape {
        samples: text.lines().filter_map(parse_line).collect(),
    }
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    let value = parse_value(rest.split_whitespace().next()?)?;
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(Vec<(String, String)>, &str)> {
    let mut labels = Vec::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        let quoted = s[eq + 1..].trim_start().strip_prefix('"')?;
        let mut chars = quoted.char_indices();
        let mut value = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => {
                    end = Some(i);
                    break;
                }
                other => value.push(other),
            }
        }
        s = &quoted[end? + 1..];
        labels.push((key, value));
    }
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => s.parse().ok(),
    }
}

/// A cumulative histogram: `(upper bound, count <= bound)` sorted by bound, plus the total.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    pub buckets: Vec<(f64, f64)>,
    pub count: f64,
    pub sum: f64,
}

impl Scrape {
    /// Value of an unlabelled sample.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels.is_empty())
            .map(|s| s.value)
    }

    /// The histogram family `name` (`name_bucket{le=..}`, `name_count`, `name_sum`).
    pub fn histogram(&self, name: &str) -> Option<Histogram> {
        let bucket_name = format!("{name}_bucket");
        let mut buckets: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter(|s| s.name == bucket_name)
            .filter_map(|s| Some((parse_value(s.label("le")?)?, s.value)))
            .collect();
        if buckets.is_empty() {
            return None;
        }
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        let count = self
            .value(&format!("{name}_count"))
            .or_else(|| buckets.last().map(|b| b.1))
            .unwrap_or(0.0);
        let sum = self.value(&format!("{name}_sum")).unwrap_or(0.0);
        Some(Histogram {
            buckets,
            count,
            sum,
        })
    }
}

impl Histogram {
    /// Observations recorded since `earlier` (bucket by bucket); bounds
    /// missing from `earlier` count as zero there.
    pub fn since(&self, earlier: &Histogram) -> Histogram {
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|b| b.0 == le)
                .map_or(0.0, |b| b.1)
        };
        Histogram {
            buckets: self
                .buckets
                .iter()
                .map(|&(le, c)| (le, (c - before(le)).max(0.0)))
                .collect(),
            count: (self.count - earlier.count).max(0.0),
            sum: (self.sum - earlier.sum).max(0.0),
        }
    }

    /// Approximate quantile `q` in 0..=1: the upper bound of the first bucket
    /// whose cumulative count reaches rank ceil(q * count). `None` when empty;
    /// may be +Inf when the quantile lies beyond the last finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self
            .buckets
            .last()
            .map_or(self.count, |b| b.1.max(self.count));
        if total <= 0.0 {
            return None;
        }
        let rank = (total * q.clamp(0.0, 1.0)).ceil().max(1.0);
        Some(
            self.buckets
                .iter()
                .find(|b| b.1 >= rank)
                .map_or(f64::INFINITY, |b| b.0),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
# HELP orders_outbox_pending Outbox rows not yet delivered or parked.
# TYPE orders_outbox_pending gauge
orders_outbox_pending 17

orders_dlq_records{status=\"PENDING\"} 3
orders_dlq_records{status=\"RESOLVED\",kind=\"a\\\"b\"} 4 1700000000000
# TYPE orders_publish_lag_seconds histogram
orders_publish_lag_seconds_bucket{le=\"0.001\"} 10
orders_publish_lag_seconds_bucket{le=\"0.01\"} 90
orders_publish_lag_seconds_bucket{le=\"0.1\"} 99
orders_publish_lag_seconds_bucket{le=\"+Inf\"} 100
orders_publish_lag_seconds_sum 1.5
orders_publish_lag_seconds_count 100
orders_event_store_position -2.5e1
";

    #[test]
    fn an_unlabelled_gauge_is_read_by_name() {
        let s = parse(TEXT);
        assert_eq!(s.value("orders_outbox_pending"), Some(17.0));
        assert_eq!(s.value("orders_event_store_position"), Some(-25.0));
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let s = parse(TEXT);
        assert!(s.samples.iter().all(|x| !x.name.starts_with('#')));
        assert_eq!(s.samples.len(), 10);
    }

    #[test]
    fn labels_are_parsed_with_escapes_and_a_trailing_timestamp_is_ignored() {
        let s = parse(TEXT);
        let resolved = s
            .samples
            .iter()
            .find(|x| x.label("status") == Some("RESOLVED"))
            .map(|x| (x.label("kind").map(str::to_owned), x.value));
        assert_eq!(resolved, Some((Some("a\"b".to_owned()), 4.0)));
    }

    #[test]
    fn a_labelled_sample_is_not_returned_as_an_unlabelled_value() {
        assert_eq!(parse(TEXT).value("orders_dlq_records"), None);
    }

    #[test]
    fn a_missing_metric_reads_as_none() {
        let s = parse(TEXT);
        assert_eq!(s.value("nope"), None);
        assert_eq!(s.histogram("nope"), None);
    }

    #[test]
    fn malformed_lines_are_skipped_not_fatal() {
        let s = parse("good 1\nbad{le=\"x 2\nworse abc\n{}\nalso_good 2\n");
        let names: Vec<_> = s.samples.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["good", "also_good"]);
    }

    #[test]
    fn a_histogram_is_assembled_from_bucket_count_and_sum_lines() {
        let h = parse(TEXT).histogram("orders_publish_lag_seconds");
        let h = h.unwrap_or_default();
        assert_eq!(h.buckets.len(), 4);
        assert_eq!(h.buckets[0], (0.001, 10.0));
        assert_eq!(h.buckets[3], (f64::INFINITY, 100.0));
        assert_eq!(h.count, 100.0);
        assert_eq!(h.sum, 1.5);
    }

    #[test]
    fn the_histogram_quantile_is_the_upper_bound_of_the_bucket_holding_it() {
        let h = parse(TEXT)
            .histogram("orders_publish_lag_seconds")
            .unwrap_or_default();
        assert_eq!(h.quantile(0.05), Some(0.001));
        assert_eq!(h.quantile(0.10), Some(0.001));
        assert_eq!(h.quantile(0.11), Some(0.01));
        assert_eq!(h.quantile(0.5), Some(0.01));
        assert_eq!(h.quantile(0.99), Some(0.1));
        assert_eq!(h.quantile(1.0), Some(f64::INFINITY));
    }

    #[test]
    fn an_empty_histogram_has_no_quantile() {
        let h = Histogram {
            buckets: vec![(0.1, 0.0), (f64::INFINITY, 0.0)],
            count: 0.0,
            sum: 0.0,
        };
        assert_eq!(h.quantile(0.5), None);
    }

    #[test]
    fn a_histogram_since_a_baseline_counts_only_the_new_observations() {
        let before = Histogram {
            buckets: vec![(0.01, 50.0), (0.1, 50.0), (f64::INFINITY, 50.0)],
            count: 50.0,
            sum: 0.2,
        };
        let after = Histogram {
            buckets: vec![(0.01, 50.0), (0.1, 140.0), (f64::INFINITY, 150.0)],
            count: 150.0,
            sum: 9.2,
        };
        let d = after.since(&before);
        assert_eq!(d.count, 100.0);
        assert_eq!(d.quantile(0.5), Some(0.1));
        assert_eq!(d.quantile(0.95), Some(f64::INFINITY));
    }
}
