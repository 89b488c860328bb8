//! Reading `GET /metrics` the way Prometheus does: the body parsed by `prometheus-parse` (a failure to parse fails
//! the test), and lookups of one sample by name and label values.

use prometheus_parse::{Scrape, Value};

/// Parses a Prometheus text-format body.
pub fn parse(body: &str) -> Scrape {
    Scrape::parse(body.lines().map(|line| Ok(line.to_string()))).unwrap_or_else(|err| panic!("{err}:\n{body}"))
}

fn find<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Option<&'a Value> {
    scrape
        .samples
        .iter()
        .find(|sample| {
            sample.metric == name && labels.iter().all(|(key, value)| sample.labels.get(key) == Some(*value))
        })
        .map(|sample| &sample.value)
}

/// The value of the counter or gauge `name` with these label values (0 when absent: a counter not yet touched).
pub fn value(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels) {
        None => 0.0,
        Some(Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value)) => *value,
        Some(other) => panic!("{name} is not a counter or gauge: {other:?}"),
    }
}

/// How many observations the histogram `name` with these label values holds (its `+Inf` bucket; 0 when absent).
pub fn histogram_count(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match find(scrape, name, labels) {
        None => 0.0,
        Some(Value::Histogram(buckets)) => {
            buckets.iter().filter(|bucket| bucket.less_than.is_infinite()).map(|bucket| bucket.count).sum()
        }
        Some(other) => panic!("{name} is not a histogram: {other:?}"),
    }
}
