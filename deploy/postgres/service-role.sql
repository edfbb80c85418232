-- One PostgreSQL role per Relais service, by hand (what `python -m relais_kit.dbroles
-- create <schema>` does). Run as an administrator (a superuser, or the database's owner
-- with CREATEROLE), connected to Relais's database, once per service:
--
--   psql "$ADMIN_URL" -v schema=referral -f deploy/postgres/service-role.sql
--   psql "$ADMIN_URL" -v schema=sites -f deploy/postgres/service-role.sql
--   psql "$ADMIN_URL" -v schema=notifications -f deploy/postgres/service-role.sql
--   psql "$ADMIN_URL" -v schema=desk_caf -f deploy/postgres/service-role.sql   # one per operator desk
--
-- Idempotent: run it again after an upgrade, it changes nothing that is right. It then
-- asks for the role's password (psql's \password: hashed on your side, SCRAM-SHA-256,
-- never sent nor logged in clear). The service's DATABASE_URL is then
--   postgresql://relais_<schema>:<password>@<host>:<port>/<database>
-- An existing schema (made by an earlier version as the administrator) is handed over
-- to the role with everything in it: see the end of the file.

\set ON_ERROR_STOP on
\if :{?schema}
\else
  \echo 'give the schema: -v schema=referral (or sites, notifications, desk_<operator>)'
  \quit
\endif
\if :{?connection_limit}
\else
  \set connection_limit 32
\endif
SELECT 'relais_' || :'schema' AS role \gset

BEGIN;
-- The role: can log in, nothing more; NOINHERIT: a membership granted later by mistake
-- gives it nothing unless it SET ROLEs.
SELECT format('CREATE ROLE %I', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role') \gexec
ALTER ROLE :"role" LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT
    CONNECTION LIMIT :connection_limit;

-- The database: it may connect; nobody but the administrator creates schemas.
SELECT format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), :'role') \gexec
SELECT format('REVOKE CREATE ON DATABASE %I FROM PUBLIC', current_database()) \gexec
-- `public`: before PostgreSQL 15, everyone may create there; from 15 on, everyone may
-- still read what is granted there. Neither, for anyone.
REVOKE ALL ON SCHEMA public FROM PUBLIC;

-- The schema: its own, created when missing.
SELECT format('CREATE SCHEMA %I AUTHORIZATION %I', :'schema', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_namespace WHERE nspname = :'schema') \gexec
ALTER SCHEMA :"schema" OWNER TO :"role";
-- What an earlier version created there as the administrator becomes the role's
-- (tables take their indexes, sequences and triggers along).
SELECT format('ALTER %s %s OWNER TO %I',
              CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW'
                             WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass, :'role')
  FROM pg_class c
 WHERE c.relnamespace = :'schema'::regnamespace AND c.relowner <> :'role'::regrole
   AND c.relkind IN ('r', 'p', 'f', 'v', 'm') \gexec
SELECT format('ALTER SEQUENCE %s OWNER TO %I', c.oid::regclass, :'role')
  FROM pg_class c
 WHERE c.relnamespace = :'schema'::regnamespace AND c.relowner <> :'role'::regrole AND c.relkind = 'S' \gexec
SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, :'role')
  FROM pg_proc p
 WHERE p.pronamespace = :'schema'::regnamespace AND p.proowner <> :'role'::regrole \gexec

-- Nothing of it for anyone else, now or later.
REVOKE ALL ON SCHEMA :"schema" FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA :"schema" FROM PUBLIC;
REVOKE ALL ON ALL SEQUENCES IN SCHEMA :"schema" FROM PUBLIC;
REVOKE ALL ON ALL ROUTINES IN SCHEMA :"schema" FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE :"role" REVOKE EXECUTE ON ROUTINES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE :"role" REVOKE USAGE ON TYPES FROM PUBLIC;
SELECT format('ALTER ROLE %I IN DATABASE %I SET search_path = %I', :'role', current_database(), :'schema') \gexec
COMMIT;

\echo 'Password of' :role '(SCRAM-SHA-256, hashed here):'
\password :role
-- Check every service at once (exit status 1 and one line per problem if any):
--   RELAIS_DB_ADMIN_URL=... python -m relais_kit.dbroles check referral sites notifications desk_caf
