-- A training cohort: the instances of CT series with slices of at most 5 mm and no missing
-- slice, in slice order. Its sop_instance_uid column is what RecordDataset(out, query) needs
-- to locate each record (notebooks/04_training_samples.py).
SELECT r.sop_instance_uid, r.series_instance_uid, r.patient_id, r.instance_number,
       s.slice_thickness, s.num_instances
FROM records r
JOIN series s ON r.series_instance_uid = s.series_instance_uid
WHERE NOT r.retired
  AND s.modality = 'CT'
  AND s.slice_thickness <= 5.0
  AND NOT COALESCE(s.has_position_gap, false)
  AND NOT COALESCE(s.has_instance_gap, false)
ORDER BY r.series_instance_uid, r.instance_number, r.sop_instance_uid
