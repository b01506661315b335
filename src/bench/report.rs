//! A bench result: a table for people, JSON for machines.

use std::fmt;

/// One measured figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Metric {
    /// What was measured (`throughput`, `p99`...).
    pub name: &'static str,
    /// The figure.
    pub value: f64,
    /// Its unit (`MB/s`, `ms`...).
    pub unit: &'static str,
}

impl Metric {
    /// A figure with its name and unit.
    pub fn new(name: &'static str, value: f64, unit: &'static str) -> Self {
        Self { name, value, unit }
    }
}

/// The figures of one run.
#[derive(Clone, Debug)]
pub struct Report {
    /// The scenario that ran.
    pub scenario: &'static str,
    /// The server: an address or the spawned command.
    pub target: String,
    /// What was measured.
    pub metrics: Vec<Metric>,
}

impl Report {
    /// The figure called `name`, if measured.
    pub fn get(&self, name: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.name == name).map(|m| m.value)
    }

    /// The report as one JSON object: `{"scenario":..,"target":..,"metrics":{name:{value,unit}}}`.
    pub fn to_json(&self) -> serde_json::Value {
        let metrics: serde_json::Map<String, serde_json::Value> = self
            .metrics
            .iter()
            .map(|m| (m.name.to_string(), serde_json::json!({ "value": m.value, "unit": m.unit })))
            .collect();
        serde_json::json!({ "scenario": self.scenario, "target": self.target, "metrics": metrics })
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} against {}", self.scenario, self.target)?;
        let width = self.metrics.iter().map(|m| m.name.len()).max().unwrap_or(0);
        for metric in &self.metrics {
            writeln!(f, "  {:<width$}  {:>14} {}", metric.name, format_value(metric.value), metric.unit)?;
        }
        Ok(())
    }
}

fn format_value(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{value:.0}")
    } else if value.abs() >= 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_and_json() {
        let report = Report {
            scenario: "ingest",
            target: "127.0.0.1:1".into(),
            metrics: vec![Metric::new("throughput", 812.25, "MB/s"), Metric::new("lines", 2000.0, "")],
        };
        assert_eq!(
            report.to_string(),
            "ingest against 127.0.0.1:1\n  throughput           812.2 MB/s\n  lines                 2000 \n"
        );
        assert_eq!(report.to_json()["metrics"]["throughput"]["value"], 812.25);
        assert_eq!(report.get("lines"), Some(2000.0));
    }
}
