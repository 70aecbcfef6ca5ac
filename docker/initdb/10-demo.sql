-- Demo schema for docker-compose.yml, run once by the postgres image on an empty volume.
--
-- PostgREST's usual roles: it logs in as `authenticator` and switches to `anon` (requests
-- without a token) or to the token's `role` claim (here `web_user`).
-- The table api.messages is served by PostgREST at /messages; a trigger hands every new row
-- to pgws, which relays it to the sockets open on the row's channel, as
--   {"channel": "<the row's channel>", "payload": {"id": ..., "channel": ..., "body": ..., "created_at": ...}}

create role authenticator login noinherit password 'authenticator'; -- matches PGRST_DB_URI
create role anon nologin;
create role web_user nologin;
grant anon to authenticator;
grant web_user to authenticator;

create schema api;
grant usage on schema api to anon, web_user;

create table api.messages (
  id bigint generated always as identity primary key,
  channel text not null default 'chat',
  body text not null,
  created_at timestamptz not null default now()
);
-- An identity column needs no grant on its sequence.
grant select on api.messages to anon;
grant select, insert on api.messages to web_user;

-- The trigger function lives outside the schema PostgREST exposes.
create schema private;

create function private.notify_pgws() returns trigger
language plpgsql as $$
begin
  -- pgws LISTENs on this channel (PGWS_LISTEN_CHANNEL) and routes by the `channel` member.
  -- A NOTIFY payload must stay under 8000 bytes: a longer row makes the insert fail.
  perform pg_notify('postgres-websockets-listener',
    json_build_object('channel', new.channel, 'payload', to_jsonb(new))::text);
  return null;
end
$$;

create trigger messages_notify_pgws
  after insert on api.messages
  for each row execute function private.notify_pgws();
