-- tenant_share_of(): a tenant's share of every bucket under a config: its entry in the
-- config's tenant_overrides, else the config's tenant_share. 1 means no tenant bucket.
--
-- The live definition is janus/db/sql/tenant_share_of.sql; a migration that changes it
-- applies a frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION tenant_share_of(
    p_overrides jsonb,    -- configs.tenant_overrides, {tenant_id: share}
    p_default   numeric,  -- configs.tenant_share
    p_tenant    text
)
RETURNS numeric
LANGUAGE sql
IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT coalesce((p_overrides ->> p_tenant)::numeric, p_default)
$fn$;
