-- Policies (issue 17, docs/policies.md): operators' Cedar policies by name, and one
-- revision counter every put and delete moves in its transaction, so replicas notice
-- a change with one cheap read and reload the policy set.
CREATE TABLE policies (
    name TEXT PRIMARY KEY,
    cedar TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE policy_revision (
    id INTEGER PRIMARY KEY,
    rev BIGINT NOT NULL
);
INSERT INTO policy_revision (id, rev) VALUES (1, 0);

-- API keys' attributes for policies: labels (a JSON array) and region.
ALTER TABLE api_keys ADD COLUMN labels TEXT;
ALTER TABLE api_keys ADD COLUMN region TEXT;
