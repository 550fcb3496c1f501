//! Simulated devices for the first run: sensors sampled at a fixed rate with
//! random-walk values, written to `silver.points` through the normal commit path.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::watch;
use tracing::{info, warn};
use weir_catalog::{AppendOptions, Lakehouse, append_batches};
use weir_hot::HotTier;

use crate::IngestError;
use crate::decode::{Point, PointBatchBuilder};

/// (metric, unit, starting value, step size, lower bound, upper bound)
const METRICS: [(&str, &str, f64, f64, f64, f64); 3] = [
    ("temperature", "°C", 45.0, 0.3, -20.0, 120.0),
    ("pressure", "kPa", 101.3, 0.2, 80.0, 130.0),
    ("vibration", "mm/s", 2.0, 0.1, 0.0, 25.0),
];

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub devices: usize,
    pub interval: Duration,
    pub seed: u64,
}

/// Random-walk state for every (device, metric) sensor.
pub struct Simulator {
    devices: Vec<String>,
    values: Vec<f64>,
    rng: StdRng,
}

impl Simulator {
    pub fn new(devices: usize, seed: u64) -> Self {
        let devices: Vec<String> = (1..=devices).map(|i| format!("sim-{i:04}")).collect();
        let values = devices
            .iter()
            .flat_map(|_| METRICS.iter().map(|m| m.2))
            .collect();
        Simulator {
            devices,
            values,
            rng: StdRng::seed_from_u64(seed),
        }
    }

    pub fn sensors(&self) -> usize {
        self.values.len()
    }

    /// One sample per sensor at `ts_micros`, as Silver point rows.
    pub fn tick(&mut self, ts_micros: i64) -> Result<RecordBatch, arrow::error::ArrowError> {
        let mut batch = PointBatchBuilder::with_capacity(self.values.len());
        for (d, device) in self.devices.iter().enumerate() {
            for (m, (name, unit, _, step, lo, hi)) in METRICS.iter().enumerate() {
                let v = &mut self.values[d * METRICS.len() + m];
                *v = (*v + self.rng.random_range(-*step..=*step)).clamp(*lo, *hi);
                let point = Point {
                    ts_micros,
                    device_id: device.clone(),
                    metric: (*name).to_string(),
                    value: Some(*v),
                    // A sensor occasionally reports a bad-quality reading.
                    quality: Some(i32::from(self.rng.random_ratio(1, 500))),
                    unit: Some((*unit).to_string()),
                    labels: vec![],
                };
                batch.push(&point, "demo");
            }
        }
        batch.finish()
    }
}

/// Runs the simulator until `shutdown` flips to true, committing once per
/// interval; the last samples are committed before returning.
pub async fn run(
    lakehouse: Lakehouse,
    hot: Arc<HotTier>,
    opts: DemoOptions,
    mut shutdown: watch::Receiver<bool>,
) -> Result<u64, IngestError> {
    let mut sim = Simulator::new(opts.devices, opts.seed);
    info!(
        devices = opts.devices,
        sensors = sim.sensors(),
        interval_ms = opts.interval.as_millis() as u64,
        "demo devices started"
    );
    let mut ticker = tokio::time::interval(opts.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut written = 0u64;
    let mut seq = 0u64;
    loop {
        let stop = tokio::select! {
            _ = ticker.tick() => false,
            _ = shutdown.changed() => true,
        };
        let now = chrono::Utc::now().timestamp_micros();
        let batch = sim.tick(now)?;
        seq += 1;
        match commit(&lakehouse, &hot, &batch, seq).await {
            Ok(rows) => {
                written += rows;
                metrics::counter!(crate::metric_names::INGEST_POINTS_TOTAL, "source" => "demo", "stream" => "demo", "partition" => "0").increment(rows);
            }
            // A failed commit loses only simulated samples; keep the demo alive.
            Err(e) if !stop => warn!(error = %e, "demo commit failed"),
            Err(e) => return Err(e),
        }
        if stop || *shutdown.borrow() {
            info!(rows = written, "demo devices stopped");
            return Ok(written);
        }
    }
}

async fn commit(
    lakehouse: &Lakehouse,
    hot: &HotTier,
    batch: &RecordBatch,
    seq: u64,
) -> Result<u64, IngestError> {
    let write_err = |source| IngestError::Write {
        table: "silver.points".into(),
        source,
    };
    let table = lakehouse
        .load_table("silver", "points")
        .await
        .map_err(write_err)?;
    let mut opts = AppendOptions::default();
    opts.snapshot_properties
        .insert("weir.source".into(), "demo".into());
    opts.snapshot_properties
        .insert("weir.demo.seq".into(), seq.to_string());
    let outcome = append_batches(lakehouse, &table, std::slice::from_ref(batch), opts)
        .await
        .map_err(write_err)?;
    // Committed at once, so never in the hot tier; rules still see the rows.
    hot.publish("silver.points", batch);
    hot.committed("silver.points");
    Ok(outcome.rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_deterministic_and_bounded() {
        let mut a = Simulator::new(3, 7);
        let mut b = Simulator::new(3, 7);
        for t in 0..100 {
            let (x, y) = (a.tick(t).unwrap(), b.tick(t).unwrap());
            assert_eq!(x, y);
            assert_eq!(x.num_rows(), 9);
        }
        let values = a.tick(100).unwrap();
        let v = values
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        assert!(v.iter().flatten().all(|x| (-20.0..=130.0).contains(&x)));
    }
}
