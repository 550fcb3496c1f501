-- gold.fleet_1m: silver.points rolled up per metric across the whole fleet into
-- 1 minute buckets (materialized view; the target table is declared in
-- catalog/gold/fleet_1m.toml). Dashboards' fleet-wide panels ("average
-- temperature per minute, all devices") read 1,440 rows a day per metric
-- from it instead of every device's minute (gold.points_1m); the rewrite
-- picks whichever view that answers holds the fewest rows.
SELECT date_bin(INTERVAL '1 minute', ts) AS bucket,
       metric,
       count(*) AS count,
       count(value) AS value_count,
       min(value) AS min_value,
       max(value) AS max_value,
       sum(value) AS sum_value,
       sum(value * value) AS sum_sq
FROM silver.points
GROUP BY 1, 2
