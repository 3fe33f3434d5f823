-- Errors by source archive and stage (scan, pack, duplicate, conflict, unpaired), committed
-- runs only, with one example message each; the worst sources first.
SELECT COALESCE(source_path, '(no source)') AS source_path,
       stage,
       count(*) AS num_errors,
       count(DISTINCT COALESCE(source_member, '')) AS num_members,
       count(DISTINCT run_id) AS num_runs,
       min(error) AS example_error
FROM errors
GROUP BY COALESCE(source_path, '(no source)'), stage
ORDER BY num_errors DESC, source_path, stage
