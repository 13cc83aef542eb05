-- leave_line(): a waiting job leaves its dependencies' line without being handed out (it is
-- cancelled): each of its buckets counts one job and its cost fewer at its priority.
--
-- token_buckets.line_jobs and line_tokens are, per bucket, the jobs in its line and the
-- tokens they wait for, by priority (element p for priority p): what admission reads to keep
-- a new job behind them (admit_requests.sql). Every change to them is made under the bucket's
-- row lock, which the caller holds. hand_out_jobs() keeps its own count while it walks the line
-- and writes it once; this is for the callers that take one job out at a time.
--
-- The live definition is janus/db/sql/leave_line.sql; a migration that changes it applies a
-- frozen copy of that file (alembic/README).

CREATE OR REPLACE FUNCTION leave_line(
    p_user_id      uuid,
    p_priority     integer,
    p_dependencies jsonb      -- the job's {name: cost}
)
RETURNS void
LANGUAGE sql
AS $fn$
    UPDATE token_buckets tb
       SET line_jobs[p_priority] = greatest(0, tb.line_jobs[p_priority] - 1),
           line_tokens[p_priority] = greatest(0, tb.line_tokens[p_priority] - d.value::bigint)
      FROM jsonb_each_text(p_dependencies) AS d
     WHERE tb.user_id = p_user_id AND tb.dependency = d.key
$fn$;
