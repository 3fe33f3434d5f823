-- Clinical notes per institution and document type (live documents only): counts, patients,
-- encodings seen and note lengths in characters.
SELECT COALESCE(institution, 'UNKNOWN') AS institution,
       COALESCE(doc_type, 'UNKNOWN') AS doc_type,
       count(*) AS num_documents,
       count(DISTINCT patient_id) AS num_patients,
       count(DISTINCT encoding) AS num_encodings,
       sum(n_chars) AS total_chars,
       min(n_chars) AS min_chars,
       max(n_chars) AS max_chars,
       round(avg(CAST(n_chars AS DOUBLE)), 1) AS mean_chars
FROM documents
WHERE NOT retired
GROUP BY COALESCE(institution, 'UNKNOWN'), COALESCE(doc_type, 'UNKNOWN')
ORDER BY institution, doc_type
