-- PostgreSQL only (CONNECT on the control-plane database revoked from PUBLIC): a SQLite
-- database is a file in the data directory, mode 0600 in a 0700 directory.
SELECT 1;
