-- The control-plane database is not for everyone on the server: PostgreSQL lets PUBLIC
-- (every role, the data-plane roles of tenants included) CONNECT to a new database and
-- LISTEN to its notifications. Only the user that runs the control plane keeps
-- CONNECT (and TEMPORARY); other users of this database need an explicit GRANT. A user
-- that may not change the database's privileges gets a warning and nothing changes.
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', current_database(), current_user);
    EXECUTE format('REVOKE ALL ON DATABASE %I FROM PUBLIC', current_database());
EXCEPTION WHEN insufficient_privilege THEN
    RAISE WARNING 'could not revoke CONNECT on database % from PUBLIC (not its owner)', current_database();
END
$$;
