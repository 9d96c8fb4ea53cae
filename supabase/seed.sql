-- =============================================================================================
-- Demo data for local development (`supabase db reset`, `bridge db apply --seed`).
-- Fixed ids and `on conflict do nothing`: applying it again changes nothing.
--
-- Demo Store: WhatsApp number 1000000000000001 (Meta), AI agent on with the default engine,
-- team "Ventas" with two online agents and one offline. The channel has no stored credentials,
-- so the bridge's environment (WHATSAPP_APP_SECRET, WHATSAPP_ACCESS_TOKEN, ...) applies.
-- The demo users exist for ownership and assignment; they have no password.
-- =============================================================================================

insert into auth.users (id, aud, role, email, raw_app_meta_data, raw_user_meta_data, created_at, updated_at)
values
  ('00000000-0000-4000-8000-000000000001', 'authenticated', 'authenticated', 'owner@demo-store.test',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Olivia Owner"}', now(), now()),
  ('00000000-0000-4000-8000-000000000002', 'authenticated', 'authenticated', 'ana@demo-store.test',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Ana Agent"}', now(), now()),
  ('00000000-0000-4000-8000-000000000003', 'authenticated', 'authenticated', 'bruno@demo-store.test',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Bruno Agent"}', now(), now()),
  ('00000000-0000-4000-8000-000000000004', 'authenticated', 'authenticated', 'carla@demo-store.test',
   '{"provider": "email", "providers": ["email"]}', '{"full_name": "Carla Agent (offline)"}', now(), now())
on conflict do nothing;

-- The owner's membership is added by the workspaces trigger.
insert into public.workspaces (id, name, slug, owner_id)
values ('10000000-0000-4000-8000-000000000001', 'Demo Store', 'demo-store',
        '00000000-0000-4000-8000-000000000001')
on conflict do nothing;

insert into public.workspace_members (id, workspace_id, user_id, role)
values
  ('11000000-0000-4000-8000-000000000002', '10000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000002', 'agent'),
  ('11000000-0000-4000-8000-000000000003', '10000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000003', 'agent'),
  ('11000000-0000-4000-8000-000000000004', '10000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000004', 'agent')
on conflict do nothing;

insert into public.whatsapp_channels (id, workspace_id, phone_number_id, display_phone_number, provider)
values ('20000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001',
        '1000000000000001', '+57 300 000 0001', 'meta')
on conflict do nothing;

insert into public.workspace_agent_config (workspace_id, agent_enabled, conversational_agent_id)
values ('10000000-0000-4000-8000-000000000001', true, 'somnio-sales-v1')
on conflict do nothing;

insert into public.teams (id, workspace_id, name, is_default)
values ('30000000-0000-4000-8000-000000000001', '10000000-0000-4000-8000-000000000001', 'Ventas', true)
on conflict do nothing;

insert into public.team_members (id, team_id, user_id, is_online)
values
  ('31000000-0000-4000-8000-000000000002', '30000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000002', true),
  ('31000000-0000-4000-8000-000000000003', '30000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000003', true),
  ('31000000-0000-4000-8000-000000000004', '30000000-0000-4000-8000-000000000001',
   '00000000-0000-4000-8000-000000000004', false)
on conflict do nothing;
