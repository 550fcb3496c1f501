-- gold.points_1d: silver.points rolled up per device and metric into 1 day
-- buckets (materialized view; the target table is declared in
-- catalog/gold/points_1d.toml). avg = sum_value / value_count; variance from sum_sq.
SELECT date_bin(INTERVAL '1 day', ts) AS bucket,
       device_id,
       metric,
       count(*) AS count,
       count(value) AS value_count,
       min(value) AS min_value,
       max(value) AS max_value,
       sum(value) AS sum_value,
       sum(value * value) AS sum_sq,
       first_value(value ORDER BY ts) AS first_value,
       min(ts) AS first_ts,
       last_value(value ORDER BY ts) AS last_value,
       max(ts) AS last_ts
FROM silver.points
GROUP BY 1, 2, 3
