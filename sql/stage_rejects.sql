-- The first row the CSV parser rejected, with its file, line and column.
SELECT s.file_path, e.line, e.column_name, e.error_type, e.csv_line, e.error_message
FROM reject_errors AS e
JOIN reject_scans AS s USING (scan_id, file_id)
ORDER BY s.file_path, e.line
LIMIT 1;
