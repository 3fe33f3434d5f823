-- Cohort overview: series by modality, body part and slice-thickness band (live records only).
-- One SQL text for both engines: `iac-spark sql OUT "$(cat jobs/sql/<file>.sql)"` (DataFusion)
-- and Spark SQL over register_views' temp views (or the published views, prefixed): only
-- functions both engines have, no identifier that needs quoting, NULLs mapped before ORDER BY.
WITH banded AS (
  SELECT COALESCE(modality, 'UNKNOWN') AS modality,
         COALESCE(body_part_examined, 'UNKNOWN') AS body_part,
         CASE WHEN slice_thickness IS NULL THEN 'unknown'
              WHEN slice_thickness <= 1.5 THEN 'thin (<= 1.5 mm)'
              WHEN slice_thickness <= 3.0 THEN 'medium (1.5-3 mm]'
              ELSE 'thick (> 3 mm)'
         END AS thickness_band,
         patient_id, study_instance_uid, num_instances, raw_bytes
  FROM series
)
SELECT modality, body_part, thickness_band,
       count(*) AS num_series,
       count(DISTINCT study_instance_uid) AS num_studies,
       count(DISTINCT patient_id) AS num_patients,
       sum(num_instances) AS num_instances,
       sum(raw_bytes) AS raw_bytes
FROM banded
GROUP BY modality, body_part, thickness_band
ORDER BY modality, body_part, thickness_band
