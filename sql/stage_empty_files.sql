-- Landing files that contributed no rows (a header and nothing else).
SELECT f.path
FROM unnest($files) AS f(path)
WHERE f.path NOT IN (SELECT DISTINCT filename FROM raw_stage)
ORDER BY f.path;
