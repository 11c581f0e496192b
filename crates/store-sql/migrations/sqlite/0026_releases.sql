-- Releases (issue 16, docs/releases.md): the record as JSON (description, upgrade
-- workflow, the bundle's location, size and SHA-256) beside the default flag, which a
-- write moves from one release to another in its transaction.
CREATE TABLE releases (
    version TEXT PRIMARY KEY,
    release TEXT NOT NULL,
    is_default BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);
CREATE INDEX releases_default ON releases (is_default);

-- The release a tenant is on (NULL: none yet) and its pin (`{reason, pinned_at}` as
-- JSON, NULL when not pinned).
ALTER TABLE tenants ADD COLUMN release TEXT;
ALTER TABLE tenants ADD COLUMN pinned TEXT;
CREATE INDEX tenants_release ON tenants (release, id);
