-- Make the staging database this cursor's default, so the parsers' tables land there.
USE daily_staging;
