-- The trainer's histories, users in ascending id order (Contract 1).
SELECT user_id, items, timestamps, split FROM splits ORDER BY user_id;
