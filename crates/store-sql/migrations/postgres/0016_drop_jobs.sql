-- Issue 13: the legacy `jobs` seam is gone. Nothing has enqueued a job since the
-- workflow engine took the tenant lifecycle over (lifecycle executions); versions
-- before this one still run a worker that finishes the jobs older ones left (each
-- pending provisioning, plan change or offboarding completes its tenant's status).
--
-- A pending job cannot be turned into the equivalent lifecycle execution in SQL (its
-- completion writes an event and an audit entry with ids and a hash chain position
-- only the server makes), and dropping it would leave its tenant in a transitional
-- status for good. So this migration refuses to run while any job is pending: the
-- server does not start, and says to run the previous version until the table is
-- empty. The whole migration is one transaction: a refusal changes nothing.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM jobs) THEN
        RAISE EXCEPTION 'migration 0016 refused: % job(s) of an earlier Tenancy version are still pending in the jobs table; run the previous version of tenancy (with its worker) until SELECT COUNT(*) FROM jobs returns 0, then start this version again (docs/storage.md#upgrading-past-the-jobs-table)', (SELECT COUNT(*) FROM jobs);
    END IF;
END
$$;

DROP TABLE jobs;
