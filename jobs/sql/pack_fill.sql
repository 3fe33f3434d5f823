-- Pack fill: per pack, its records, how many are still live (not retired by a later build
-- that re-ingested their source), its size, and the live fraction; packs with a low live
-- fraction are the candidates for a rebuild.
WITH per_pack AS (
  SELECT pack_id,
         count(*) AS num_rows,
         sum(CASE WHEN retired THEN 0 ELSE 1 END) AS live_records
  FROM records
  GROUP BY pack_id
)
SELECT p.dataset, p.payload_type, p.pack_id,
       p.num_records, p.num_patients,
       COALESCE(l.live_records, 0) AS live_records,
       p.data_bytes, p.file_bytes,
       round(CAST(COALESCE(l.live_records, 0) AS DOUBLE)
             / CAST(NULLIF(p.num_records, 0) AS DOUBLE), 4) AS live_fraction,
       round(CAST(p.data_bytes AS DOUBLE) / CAST(NULLIF(p.file_bytes, 0) AS DOUBLE), 4)
         AS data_fraction
FROM packs p
LEFT JOIN per_pack l ON p.pack_id = l.pack_id
ORDER BY p.dataset, p.pack_id
